"""Deprecated name, kept only until ``rfmml.export.pipeline`` calls ``rfmml.export.fit_head``.

``fit_heads(...)`` = ``fit_export_head(...)`` wrapped so that ``.head_with(metadata)`` and
``.metadata`` keep working; score with ``rfmml.runtime.heads.HeadScorer`` (the export's FittedHeads
mirror of the Head is gone). Delete this module once nothing imports it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rfmml.export.fit_head import fit_export_head
from rfmml.runtime.artifact import Head


@dataclass(frozen=True)
class FittedHeads:
    """The fitted runtime Head (compatibility wrapper)."""

    head: Head

    @property
    def metadata(self) -> dict:
        return self.head.metadata

    def head_with(self, metadata: dict) -> Head:
        return dataclasses.replace(self.head, metadata=metadata)


def fit_heads(*args, **kwargs) -> FittedHeads:
    """``fit_export_head`` (same arguments) in the compatibility wrapper."""
    return FittedHeads(fit_export_head(*args, **kwargs))
