"""Old name of :mod:`rfmml.runtime.infer` (and :func:`rfmml.runtime.outputs.write_scene_outputs`).

Kept only until ``rfmml-demo`` imports ``infer_scene`` from :mod:`rfmml.runtime.infer`; then deleted.
"""

from __future__ import annotations

from rfmml.runtime.infer import infer_scene
from rfmml.runtime.outputs import SceneOutputs, write_scene_outputs

__all__ = ["SceneOutputs", "infer_scene", "write_scene_outputs"]
