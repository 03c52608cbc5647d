"""The method registry: ``--method`` name -> the class that builds its phases and its step.

Adding a method means adding its step (a class with the :class:`rfmml.trainer.method_interface.Method`
interface and ``describe()``) and one line here (and its name in ``config_rules.METHODS``); the engine
stays as it is.
"""

from __future__ import annotations

from collections.abc import Callable

from rfmml.trainer.ce_train import CrossEntropyMethod
from rfmml.trainer.config_rules import CE_METHODS, FROZEN_METHOD
from rfmml.trainer.episodic import PLANS, EpisodicMethod
from rfmml.trainer.frozen import FrozenMethod
from rfmml.trainer.method_interface import Method, TrainSetup

MethodBuilder = Callable[[TrainSetup], Method]

METHOD_BUILDERS: dict[str, MethodBuilder] = {
    **{name: EpisodicMethod for name in PLANS},  # rfmml, its ablations, protonet, rfmml-plus
    **{name: CrossEntropyMethod for name in CE_METHODS},  # plain, reweight, resample, logit-adjust
    FROZEN_METHOD: FrozenMethod,  # no training
}


def build_method(setup: TrainSetup) -> Method:
    """The method ``setup.config.method`` (a name of ``config_rules.METHODS``), built on ``setup``."""
    return METHOD_BUILDERS[setup.config.method](setup)
