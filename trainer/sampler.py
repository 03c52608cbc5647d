"""Episode sampling with torch ops on the training device.

Two generators, both seeded from the run's seed and both saved in checkpoints:
- a CPU ``torch.Generator`` draws the episode's shape (K, N): plain ints that fix tensor shapes, so
  the host never waits on the device to learn them;
- a ``torch.Generator`` on the training device draws the classes and the images (random keys, sorted
  per class row): no Python loop over images, no host sync.

Query modes:
- "pool" (RET): M = K * queries query images drawn uniformly, without replacement, from the union of
  the remaining (non-support) images of the K classes, so per-class query counts vary. M is capped,
  without a sync, by the pool of the K smallest classes in the class pool.
- "balanced" (ACF, ProtoNet): q images from every class, q = max(1, min(queries, q_cap - N)) with
  q_cap = N_max for ACF.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EpisodeSpec:
    """How to draw an episode: from ``classes`` (global labels), K in [k_min, k_max], N in
    [n_min, n_max] (inclusive), ``queries`` per class, query mode "pool" or "balanced", and for
    balanced queries the cap ``q_cap`` (q <= q_cap - N; None: no cap)."""

    classes: tuple[int, ...]
    k_min: int
    k_max: int
    n_min: int
    n_max: int
    queries: int
    query_mode: str = "pool"
    q_cap: int | None = None


@dataclass
class Episode:
    """Indices into the training tensor and episode-local labels (all on the device).

    support: int64 [K * N], class-major (support[k * N + j] is shot j of class k);
    query: int64 [M]; query_labels: int64 [M] in [0, K); classes: int64 [K] global labels.
    """

    k: int
    n: int
    support: torch.Tensor
    query: torch.Tensor
    query_labels: torch.Tensor
    classes: torch.Tensor

    @property
    def n_query(self) -> int:
        return int(self.query.shape[0])

    def queries_per_class(self) -> list[int]:
        """Query count per episode class (syncs with the device: call when logging)."""
        return torch.bincount(self.query_labels, minlength=self.k).tolist()


def resume_seed(seed: int, phase_index: int, step: int) -> int:
    """The seed of a device generator re-seeded at (phase, step) of a run seeded ``seed`` (a resume on
    another device type): a fixed function, so two such resumes draw the same; below 2**63."""
    return (seed * 1_000_003 + phase_index * 100_003 + step) % (2**63)


def ret_spec(majority: list[int], n_max: int, queries: int) -> EpisodeSpec:
    """RET: K ~ U[2, |C_maj|], N ~ U[1, N_max) (just {1} when N_max <= 2), pooled queries."""
    return EpisodeSpec(tuple(majority), 2, len(majority), 1, max(1, n_max - 1), queries, "pool")


def acf_spec(n_classes: int, n_max: int, queries: int) -> EpisodeSpec:
    """ACF: K = all classes, N ~ U[1, N_max), balanced q = min(queries, N_max - N) per class."""
    all_classes = tuple(range(n_classes))
    return EpisodeSpec(all_classes, n_classes, n_classes, 1, max(1, n_max - 1), queries, "balanced", n_max)


class EpisodeSampler:
    """Draws :class:`Episode` s from the training labels (int64 [N_train], any device)."""

    def __init__(self, labels: torch.Tensor, n_classes: int, seed: int, device: torch.device | str):
        self.device = torch.device(device)
        labels = labels.to("cpu", torch.int64)
        self.counts = torch.bincount(labels, minlength=n_classes)  # host copy: [C]
        max_n = int(self.counts.max())
        index = torch.zeros(n_classes, max_n, dtype=torch.int64)
        order = torch.argsort(labels, stable=True)
        start = 0
        for c in range(n_classes):  # once, at set-up: a loop over classes, not images
            n = int(self.counts[c])
            index[c, :n] = order[start : start + n]
            start += n
        self.class_index = index.to(self.device)  # [C, max_n], padded with 0
        self.class_counts = self.counts.to(self.device)
        self.seed = seed
        self.shape_gen = torch.Generator().manual_seed(seed)
        self.gen = torch.Generator(device=self.device).manual_seed(seed + 1)
        self._pools: dict[tuple[int, ...], torch.Tensor] = {}

    def check(self, spec: EpisodeSpec) -> None:
        """Raise ValueError when some draw of ``spec`` could not be filled."""
        counts = self.counts[list(spec.classes)]
        if spec.k_min < 1 or spec.k_max > len(spec.classes) or spec.k_min > spec.k_max:
            raise ValueError(f"K range [{spec.k_min}, {spec.k_max}] does not fit {len(spec.classes)} classes")
        if spec.query_mode == "balanced":
            need = max(n + self._q(spec, n) for n in range(spec.n_min, spec.n_max + 1))
        else:
            need = spec.n_max + 1  # at least one image left for the query pool
        if int(counts.min()) < need:
            raise ValueError(f"a class has {int(counts.min())} images; episodes need {need}")

    @staticmethod
    def _q(spec: EpisodeSpec, n: int) -> int:
        if spec.q_cap is None:
            return spec.queries
        return max(1, min(spec.queries, spec.q_cap - n))

    def _randint(self, low: int, high: int) -> int:
        """Uniform int in [low, high] from the CPU shape generator."""
        return int(torch.randint(low, high + 1, (1,), generator=self.shape_gen))

    def sample(self, spec: EpisodeSpec) -> Episode:
        """Draw one episode (see the module docstring)."""
        k = self._randint(spec.k_min, spec.k_max)
        n = self._randint(spec.n_min, spec.n_max)
        pool = self._pools.get(spec.classes)
        if pool is None:  # copied to the device once per class pool: a copy per episode would sync
            pool = self._pools[spec.classes] = torch.tensor(
                spec.classes, dtype=torch.int64, device=self.device
            )
        if k < len(spec.classes):
            pick = torch.randperm(len(spec.classes), generator=self.gen, device=self.device)[:k]
            classes = pool[pick]
        else:
            classes = pool
        rows = self.class_index[classes]  # [K, max_n]
        counts = self.class_counts[classes]  # [K]
        max_n = rows.shape[1]
        cols = torch.arange(max_n, device=self.device)
        keys = torch.rand(k, max_n, generator=self.gen, device=self.device)
        keys = keys.masked_fill(cols[None, :] >= counts[:, None], 2.0)  # padding sorts last
        perm = keys.argsort(dim=1)  # a random permutation of each class's images, padding last
        support = rows.gather(1, perm[:, :n]).reshape(-1)
        if spec.query_mode == "balanced":
            q = self._q(spec, n)
            query = rows.gather(1, perm[:, n : n + q]).reshape(-1)
            query_labels = torch.arange(k, device=self.device).repeat_interleave(q)
        elif spec.query_mode == "pool":
            smallest = self.counts[list(spec.classes)].sort().values[:k]
            m = min(k * spec.queries, int(smallest.sum()) - k * n)
            rest = perm[:, n:]  # [K, max_n - N] positions not used as support
            valid = cols[n:][None, :] < counts[:, None]
            keys2 = torch.rand(rest.shape, generator=self.gen, device=self.device).masked_fill(~valid, 2.0)
            flat = keys2.reshape(-1).topk(m, largest=False).indices  # M uniform picks from the pool
            query_labels = flat // rest.shape[1]
            query = rows.gather(1, rest).reshape(-1)[flat]
        else:
            raise ValueError(f"unknown query mode {spec.query_mode!r}")
        return Episode(k, n, support, query, query_labels, classes)

    def reseed_device(self, state: dict[str, torch.Tensor], phase_index: int, step: int) -> None:
        """Resume from ``state`` written on another device type: the CPU shape generator loads, the
        device generator (whose state does not transfer) is re-seeded by :func:`resume_seed`."""
        self.shape_gen.set_state(state["shape_gen"])
        self.gen.manual_seed(resume_seed(self.seed + 1, phase_index, step))

    def state(self) -> dict[str, torch.Tensor]:
        return {"shape_gen": self.shape_gen.get_state(), "gen": self.gen.get_state()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.shape_gen.set_state(state["shape_gen"])
        self.gen.set_state(state["gen"])
