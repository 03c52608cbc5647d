"""Training under ``torchrun``: N processes (ranks), one optimizer step = one step on every rank with
the gradients averaged across ranks, as PyTorch DDP computes them.

torchrun is detected from the environment it sets (WORLD_SIZE, RANK, LOCAL_RANK); without it (or with
WORLD_SIZE 1) :data:`SINGLE` is the world and every collective below is a no-op: a single process
never initialises ``torch.distributed`` and trains exactly as before.

Why no ``DistributedDataParallel`` wrapper: the engine owns the optimizer of every method, so one
pre-step hook on it (:meth:`World.average_gradients`) averages exactly the parameters that are
trained, whatever module holds them: the embedding net, a cross-entropy method's linear layer, the
head of ``--tune head`` on cached features. Wrapping would need every method to call a wrapper's
forward and would rename the state_dict keys (``module.``) that checkpoints and the exporter read.
The arithmetic is DDP's: gradients summed by one all-reduce and divided by N; a parameter without a
gradient on some rank counts as zero there, and one without a gradient on every rank keeps none (Adam
then skips it, as in a single process). Like DDP, BatchNorm's running statistics are rank 0's: they are
broadcast from rank 0 before each validation (all ranks validate the same weights identically; only
rank 0 writes), and the weights are broadcast from rank 0 once at the start.

Per-rank randomness: rank r seeds its episode sampler (and a cross-entropy method's augmentation)
from ``seed + RANK_SEED_STRIDE * r`` (:meth:`World.rank_seed`), so rank 0 draws the single-process
stream and a run is reproducible for a given N.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import timedelta

import torch

from rfmml.runtime.errors import InputError

RANK_SEED_STRIDE = 1000  # rank r's generators: seed + 1000 * r (rank 0: the single-process seed)
TIMEOUT_ENV = "RFMML_DDP_TIMEOUT"  # seconds a collective waits for the other ranks (default 1800)
DIGEST_ENV = "RFMML_DDP_DIGEST"  # set: every rank prints a digest of its trained state (tests)
DEFAULT_TIMEOUT_S = 1800.0
BUCKET_BYTES = 25 * 2**20  # gradients all-reduced in buckets of this size (DDP's default)


class PeerFailed(InputError):
    """Another rank of the torchrun job failed while setting up (its own message says why)."""


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` processes, ``local_rank`` on its node;
    ``device``: where collective tensors live (the rank's CUDA device under nccl, else the CPU)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_writer(self) -> bool:
        """Whether this process writes the run folder (rank 0 alone: lock, metrics, checkpoints)."""
        return self.rank == 0

    def rank_seed(self, seed: int) -> int:
        """The seed of this rank's episode stream (``seed`` itself on rank 0 and in a single process)."""
        return seed + RANK_SEED_STRIDE * self.rank

    def stride(self, unit: str) -> int:
        """Units of a phase one optimizer step consumes: N episodes (one per rank), or 1 epoch (each
        rank takes its shard of the epoch, :meth:`shard`)."""
        return self.size if unit == "episode" else 1

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's part of an epoch's indices [M] (the same order on every rank): every N-th one
        from position ``rank``, the order first padded by its own start (as DistributedSampler does)
        to a multiple of N, so every rank runs the same number of batches."""
        if self.size == 1:
            return order
        padded = torch.cat([order, order[: (-order.shape[0]) % self.size]])
        return padded[self.rank :: self.size]

    # -- collectives: every rank must call them at the same points, in the same order --

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Replace each parameter's gradient by its mean over the ranks (DDP's average)."""
        if self.size == 1:
            return
        import torch.distributed as dist

        has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=self.device)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        work = [dist.all_reduce(has_grad, async_op=True)]
        buckets = list(_buckets(grads))
        flats = [torch.cat([g.reshape(-1) for g in bucket]) for bucket in buckets]
        work += [dist.all_reduce(flat, async_op=True) for flat in flats]
        for handle in work:
            handle.wait()
        for bucket, flat in zip(buckets, flats, strict=True):
            flat /= self.size
            offset = 0
            for g in bucket:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()
        for p, g, used in zip(params, grads, has_grad.tolist(), strict=True):
            p.grad = g if used else None

    def average_gradients_on_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Average the gradients of ``optimizer``'s parameters before each of its steps."""
        if self.size == 1:
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        optimizer.register_step_pre_hook(lambda _opt, _args, _kwargs: self.average_gradients(params))

    def broadcast_state(self, modules: Iterable[torch.nn.Module], buffers_only: bool = False) -> None:
        """Rank 0's parameters and buffers (or buffers only) into every rank's ``modules``."""
        if self.size == 1:
            return
        tensors = [t for m in modules for t in (m.buffers() if buffers_only else m.state_dict().values())]
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        for group in by_dtype.values():
            flat = self._broadcast(torch.cat([t.detach().reshape(-1) for t in group]))
            offset = 0
            for t in group:
                with torch.no_grad():
                    t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()

    def _broadcast(self, flat: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        on_device = flat.to(self.device)
        dist.broadcast(on_device, src=0)
        return on_device

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` (same shape on all), stacked [size, ...] on the CPU."""
        if self.size == 1:
            return tensor.detach().cpu()[None]
        import torch.distributed as dist

        local = tensor.detach().to(self.device).contiguous()
        out = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(out, local)
        return torch.stack(out).cpu()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over the ranks (a new tensor; ``tensor`` itself in a single process)."""
        if self.size == 1:
            return tensor
        return self.all_gather(tensor).sum(0).to(tensor.device)

    def gather_states(self, state: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Every rank's ``state`` (generator states: the same keys and shapes on every rank, the method
        being the same), index r = rank r; ``[state]`` in a single process."""
        if self.size == 1:
            return [dict(state)]
        gathered: list[dict[str, torch.Tensor]] = [{} for _ in range(self.size)]
        for name in sorted(state):
            for r, value in enumerate(self.all_gather(state[name]).unbind(0)):
                gathered[r][name] = value.clone()
        return gathered

    @contextmanager
    def all_or_none(self) -> Iterator[None]:
        """Every rank leaves the block together: when the block raises on some rank, that rank
        re-raises its error and every other one raises :class:`PeerFailed` (instead of waiting in
        the next collective). The block itself must hold no collective."""
        if self.size == 1:
            yield
            return
        try:
            yield
        except BaseException:
            # the peers may be gone already (their failure ends the job): our own error is the one to show
            with suppress(RuntimeError):
                self.sum(torch.ones(1))
            raise
        if int(self.sum(torch.zeros(1))):
            raise PeerFailed("another process of this torchrun job failed while setting up (see its error)")


SINGLE = World()


def _buckets(grads: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """``grads`` in consecutive groups of one dtype, each up to BUCKET_BYTES (or one larger tensor)."""
    bucket: list[torch.Tensor] = []
    size = 0
    for g in grads:
        nbytes = g.numel() * g.element_size()
        if bucket and (size + nbytes > BUCKET_BYTES or g.dtype != bucket[0].dtype):
            yield bucket
            bucket, size = [], 0
        bucket.append(g)
        size += nbytes
    if bucket:
        yield bucket


def world_from_env(environ: Mapping[str, str] = os.environ) -> World:
    """The world torchrun describes in ``environ`` (RANK, WORLD_SIZE, LOCAL_RANK); SINGLE without it."""
    if "WORLD_SIZE" not in environ:
        return SINGLE
    try:
        rank, size = int(environ["RANK"]), int(environ["WORLD_SIZE"])
        local_rank = int(environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError):
        raise InputError(
            "WORLD_SIZE is set but RANK/LOCAL_RANK are missing or not integers; launch with torchrun"
        ) from None
    if not (0 <= rank < size and local_rank >= 0):
        raise InputError(f"RANK {rank} is not in [0, WORLD_SIZE {size}); launch with torchrun")
    return SINGLE if size == 1 else World(rank, size, local_rank)


def rank_device(device: torch.device, world: World) -> torch.device:
    """The training device of this rank: CUDA device LOCAL_RANK under torchrun (``--device cuda`` or
    auto on a GPU machine), else ``device`` as resolved for a single process."""
    if world.size == 1 or device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise InputError(
            f"local rank {world.local_rank} has no GPU: this node has {count}; "
            f"use --nproc-per-node {count} or fewer (or --device cpu)"
        )
    return torch.device("cuda", world.local_rank)


@contextmanager
def joined(world: World, device: torch.device) -> Iterator[World]:
    """The process group for ``world`` (nccl on CUDA, gloo on the CPU) around the block; yields the
    world with its collective device. Destroyed on the way out, whatever happens; after the block
    went well, only once every rank has reached its end (no rank tears its connections down while
    another still uses them). A collective waits $RFMML_DDP_TIMEOUT seconds (default 1800) for a rank
    that has stopped before it fails."""
    if world.size == 1:
        yield world
        return
    import torch._dynamo  # noqa: F401 (see below)
    import torch.distributed as dist

    # torch._dynamo, which the first optimizer imports, keeps a process group that exists when it is
    # imported alive past destroy_process_group: its gloo threads then outlive the group and race the
    # interpreter's exit (SIGABRT, "terminate called without an active exception", 3 runs in 20 here).
    # Imported before the group, it holds none (measured: the group's threads end with it).
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    try:
        timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    except ValueError:
        raise InputError(f"${TIMEOUT_ENV} must be a number of seconds") from None
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout))
    joined_world = replace(world, device=device if cuda else torch.device("cpu"))
    try:
        yield joined_world
        joined_world.sum(torch.zeros(1))  # every rank is here
    finally:
        dist.destroy_process_group()


def state_digest(modules: Iterable[torch.nn.Module]) -> str:
    """SHA-256 over the state_dicts (names, shapes, bytes) of ``modules``: equal on every rank when
    the ranks hold the same weights and buffers."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            t = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
