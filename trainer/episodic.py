"""The episodic methods: one step = one episode (RET, ACF, ProtoNet phases).

The decoded training images live as one uint8 tensor on the training device; every episode is
sampled, gathered, augmented and embedded there in one forward pass. The host syncs with the device
only when the engine logs or validates.

Phases per method: rfmml and rfmml-plus = RET then ACF; rfmml-no-ret = ACF only; rfmml-no-acf = RET
only; protonet = fixed episodes on all classes (K = |C|, N = N_max - 1, balanced queries) for
``ret_episodes`` at ``ret_lr``. Validation: the Proto head (prototypes from ALL training images) on
the validation part; with ``--proto-head calibrated`` the calibrated one (proto_calibration.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from rfmml.runtime.errors import InputError
from rfmml.runtime.heads import proto_logits
from rfmml.trainer.config_rules import PLUS_METHOD
from rfmml.trainer.episode import episode_loss
from rfmml.trainer.heads import accuracy_report, embed, fit_prototypes, predict
from rfmml.trainer.method_interface import Phase, StepResult, TrainSetup
from rfmml.trainer.proto_calibration import calibrated_head
from rfmml.trainer.sampler import Episode, EpisodeSampler, EpisodeSpec, acf_spec, ret_spec

PhasePlan = Callable[[TrainSetup, int], "tuple[Phase, EpisodeSpec] | None"]


def n_max_of(setup: TrainSetup) -> int:
    """N_max: --n-max, else the smallest minority training count, else min(smallest class, threshold)."""
    config, split = setup.config, setup.split
    counts = split.counts("train")
    smallest = min(counts.values())
    if config.n_max is not None:
        if config.n_max > smallest:
            raise InputError(f"--n-max {config.n_max} is larger than the smallest class ({smallest} images)")
        return config.n_max
    if split.minority:
        return min(counts[c] for c in split.minority)
    return min(smallest, config.minority_threshold)


def _episodic_phase(setup: TrainSetup, name: str, episodes: int, lr: float, flag: str) -> Phase:
    config = setup.config
    return Phase(name, episodes, "episode", lr, flag, int(config.log_every), int(config.val_every))


def ret_phase(setup: TrainSetup, n_max: int) -> tuple[Phase, EpisodeSpec] | None:
    """RET on the majority classes (none when --ret-episodes is 0)."""
    config = setup.config
    if not config.ret_episodes:
        return None
    majority = [setup.split.classes.index(c) for c in setup.split.majority]
    if len(majority) < 2:
        raise InputError("RET needs at least 2 majority classes; pass --ret-episodes 0")
    phase = _episodic_phase(setup, "ret", config.ret_episodes, float(config.ret_lr), "--ret-lr")
    return phase, ret_spec(majority, n_max, config.queries)


def acf_phase(setup: TrainSetup, n_max: int) -> tuple[Phase, EpisodeSpec] | None:
    """ACF on all classes (none when --acf-episodes is 0)."""
    config = setup.config
    if not config.acf_episodes:
        return None
    phase = _episodic_phase(setup, "acf", config.acf_episodes, float(config.acf_lr), "--acf-lr")
    return phase, acf_spec(len(setup.split.classes), n_max, config.queries)


def protonet_phase(setup: TrainSetup, n_max: int) -> tuple[Phase, EpisodeSpec]:
    """ProtoNet: K = |C|, N = N_max - 1 shots, balanced queries, ``ret_episodes`` at ``ret_lr``."""
    config = setup.config
    n_classes = len(setup.split.classes)
    shots = max(1, n_max - 1)
    spec = EpisodeSpec(
        tuple(range(n_classes)), n_classes, n_classes, shots, shots, config.queries, "balanced", n_max
    )
    phase = _episodic_phase(setup, "protonet", int(config.ret_episodes), float(config.ret_lr), "--ret-lr")
    return phase, spec


PLANS: dict[str, tuple[PhasePlan, ...]] = {
    "rfmml": (ret_phase, acf_phase),
    "rfmml-no-ret": (acf_phase,),
    "rfmml-no-acf": (ret_phase,),
    "protonet": (protonet_phase,),
    # RF-MML+: rfmml's phases and loss; its own budgets (config_defaults.PLUS_BUDGETS) and calibrated head
    PLUS_METHOD: (ret_phase, acf_phase),
}


class EpisodicMethod:
    """Prototypical episodes through the engine; see the module docstring."""

    has_validation: bool

    def __init__(self, setup: TrainSetup) -> None:
        self.setup = setup
        self.model = setup.model
        data = setup.data
        self.has_validation = data.val_images.shape[0] > 0
        self.sampler = EpisodeSampler(  # each torchrun rank draws its own episodes (rank 0: --seed)
            data.train_labels, len(setup.split.classes), setup.sampler_seed, setup.device
        )
        n_max = n_max_of(setup)
        planned = [plan(setup, n_max) for plan in PLANS[setup.config.method]]
        planned = [p for p in planned if p is not None]
        self.phases = [phase for phase, _ in planned]
        self.specs = [spec for _, spec in planned]
        for phase, spec in planned:
            try:
                self.sampler.check(spec)
            except ValueError as error:
                raise InputError(f"{phase.name} episodes cannot be drawn: {error}") from None
        self.augment = data.augmenter(setup.config.augment, setup.device)
        self.cuda = setup.device.type == "cuda"
        self._window = torch.zeros(2, device=setup.device)  # loss and accuracy sums since the last note
        self._window_n = 0
        self._last_size = (0, 0, 0)  # K, N, queries of the last episode drawn

    def describe(self) -> str:
        setup = self.setup
        return (
            f"training on {setup.device}: {setup.config.backbone} (--tune {setup.config.tune}), "
            f"{setup.config.method}, "
            f"{len(setup.split.classes)} classes ({len(setup.split.minority)} minority), "
            + ", ".join(f"{p.name} {p.steps} episodes lr {p.lr:g}" for p in self.phases)
        )

    def modules(self) -> dict[str, torch.nn.Module]:
        return {}

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]  # frozen parts: --tune

    def step(
        self, phase_index: int, step: int, optimizer: torch.optim.Optimizer, tick: Callable[[int], None]
    ) -> StepResult:
        """One episode of phase ``phase_index``: sample, augment, embed, loss, Adam step."""
        self.model.train()
        ep = self.sample_episode(phase_index)
        batch = self.setup.data.batch(torch.cat([ep.support, ep.query]), self.augment, self.sampler.gen)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            emb = self.model(batch)
        loss, acc = self.loss(emb, ep)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss, acc = loss.detach(), acc.detach()
        self._window += torch.stack([loss, acc])
        self._window_n += 1
        tick(1)
        name = self.phases[phase_index].name

        def record() -> dict[str, Any]:
            return {
                "kind": "episode",
                "phase": name,
                "episode": step,
                "K": ep.k,
                "N": ep.n,
                "queries": ep.n_query,
                "queries_per_class": ep.queries_per_class(),
                "loss": float(loss),
                "accuracy": float(acc),
            }

        return StepResult(loss, record)

    def loss(self, emb: torch.Tensor, ep: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """The episode's loss and query accuracy from its embeddings [K*N + queries, D] (support first):
        cross-entropy of softmax(-distance to the prototypes). Variants of the method override this."""
        return episode_loss(emb, ep.k, ep.n, ep.query_labels, self.setup.config.distance)

    def sample_episode(self, phase_index: int) -> Episode:
        """The next episode of phase ``phase_index``; its size is kept for :meth:`memory_note`."""
        ep = self.sampler.sample(self.specs[phase_index])
        self._last_size = (ep.k, ep.n, ep.n_query)
        return ep

    def progress_note(self, phase_index: int, step: int) -> str:
        """Mean loss and accuracy since the last note (syncs)."""
        loss, acc = (self._window / max(self._window_n, 1)).tolist()
        self._window.zero_()
        self._window_n = 0
        return f"loss {loss:.3f} acc {acc:.3f}"

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Proto-head accuracy on the validation part, prototypes from ALL training images, scored by
        the runtime's Proto scorer (what inference computes)."""
        data, config, device = self.setup.data, self.setup.config, self.setup.device
        n_classes = len(data.classes)
        train_emb = embed(self.model, data.train_images, config.batch_size, device)
        val_emb = embed(self.model, data.val_images, config.batch_size, device)
        if config.calibrated_proto:  # select the checkpoint under the head that will be shipped
            pred = predict(
                calibrated_head(
                    train_emb,
                    data.train_labels.cpu(),
                    val_emb,
                    data.val_labels.cpu(),
                    data.classes,
                    data.majority,
                    config,
                ),
                val_emb,
                "proto",
            )
            return accuracy_report(pred, data.val_labels.cpu(), data.classes, data.majority)
        prototypes = fit_prototypes(train_emb, data.train_labels.cpu(), n_classes)
        pred = proto_logits(val_emb.numpy(), prototypes, config.distance).argmax(1)
        return accuracy_report(pred, data.val_labels.cpu(), data.classes, data.majority)

    def rng_state(self) -> dict[str, torch.Tensor]:
        return self.sampler.state()

    def load_rng_state(self, state: dict[str, torch.Tensor]) -> None:
        self.sampler.load_state(state)

    def reseed_device_rng(self, state: dict[str, torch.Tensor], phase_index: int, step: int) -> None:
        """Resume from generators written on another device type (see ``Engine.load_rng``)."""
        self.sampler.reseed_device(state, phase_index, step)

    def memory_note(self, phase_index: int) -> str:
        """The episode's size and the flags that lower it (for an out-of-memory error): the last
        episode drawn by :meth:`sample_episode`, else the phase's largest possible one."""
        config, spec = self.setup.config, self.specs[phase_index]
        k, n, m = self._last_size
        if k:
            size = f"episode of {k * n + m} images: K={k} classes x N={n} shots + {m} queries"
        else:
            size = f"episodes of up to {spec.k_max * (spec.n_max + spec.queries)} images"
        return f"{size}; lower --queries (now {config.queries}) or --n-max (now {n_max_of(self.setup)})"
