"""Data-parallel training across processes and machines with torch.distributed, as torchrun starts it.

``torchrun --nproc_per_node=N [--nnodes M --node-rank R --rdzv-endpoint HOST:PORT] -m core.train ...`` starts
one training process per rank; each reads its place in the world from torchrun's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``) and joins one process group: gloo for CPU tensors, NCCL for
CUDA ones (``cpu:gloo,cuda:nccl`` on a machine with CUDA).

What makes N processes train as one process would with the same global batch:

* every process builds the same networks from the same seed; each trained network is wrapped in
  ``torch.nn.parallel.DistributedDataParallel`` (:func:`wrap_networks`), which broadcasts rank 0's weights and
  averages the gradients during every backward pass; methods call ``Method.net(name)`` in their training steps
  and keep their own optimisers and GAN steps;
* each process takes an equal slice of every global batch (:class:`core.feed.StepBatches`, the
  ``DistributedSampler`` of a run whose order is a pure function of its seed and epoch);
* on CUDA, BatchNorm is ``SyncBatchNorm``; on the CPU (torch's SyncBatchNorm is GPU-only) each process
  normalises its own share of the batch;
* the losses of each step are averaged across processes, and a stop request (SIGTERM on any process) or a NaN is
  seen by all of them at the same step (:class:`StepSync`);
* validation: each process predicts its share of the validation images (:func:`shard`), and the per-image
  figures are gathered in order, so every process holds the figures of the whole set.

Rank 0 alone writes the run directory (status, metrics, samples, checkpoints); the other processes write
nothing there (their would-be status writes go to a scratch folder of their own, removed when they exit).
Checkpoints hold the plain networks' state dicts and the global step, the same whatever the number of
processes, so a run saved under N processes resumes under M.
"""

from __future__ import annotations

import atexit
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from core.config import ConfigError, TrainConfig

if TYPE_CHECKING:
    from core.methods import Method
    from core.train import StopFlag

TIMEOUT = timedelta(minutes=60)  # the longest a process waits for the others (rank 0 validating, decoding)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run: ``rank`` of ``size``, ``local_rank`` of
    ``local_size`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


SINGLE = World()


def from_env(env: dict[str, str] | None = None) -> World:
    """The world torchrun describes in the environment (one process when ``WORLD_SIZE`` is unset or 1)."""
    env = dict(os.environ if env is None else env)
    try:
        size = int(env.get("WORLD_SIZE") or 1)
        if size <= 1:
            return SINGLE
        return World(int(env["RANK"]), size, int(env.get("LOCAL_RANK") or 0),
                     int(env.get("LOCAL_WORLD_SIZE") or size))
    except (KeyError, ValueError) as e:
        raise ConfigError(f"torchrun's environment is incomplete or malformed ({e}); start with torchrun "
                          "--nproc_per_node=N -m core.train ...") from None


def join(world: World) -> None:
    """Join the world's process group, once per process (nothing for a single process)."""
    if not world.active or dist.is_initialized():
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(world.local_rank % max(1, torch.cuda.device_count()))
    dist.init_process_group(backend="cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=TIMEOUT)


def leave() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for(world: World, device: torch.device) -> torch.device:
    """The device of this process: its own GPU (``LOCAL_RANK``) when training on CUDA."""
    if device.type == "cuda" and world.active:
        return torch.device("cuda", world.local_rank % max(1, torch.cuda.device_count()))
    return device


def barrier(world: World) -> None:
    """Wait until every process gets here (an all-reduce on the CPU, so gloo carries it)."""
    if world.active:
        dist.all_reduce(torch.zeros(1))


@contextmanager
def local_first(world: World) -> Iterator[None]:
    """The first process of each machine runs the block (e.g. decoding and caching the data), then the others."""
    if world.active and world.local_rank != 0:
        barrier(world)
    yield
    if world.active and world.local_rank == 0:
        barrier(world)


def broadcast_object(world: World, obj: Any = None) -> Any:
    """Rank 0's ``obj``, on every process (pickled through a CPU tensor)."""
    if not world.active:
        return obj
    data = pickle.dumps(obj) if world.is_main else b""
    n = torch.tensor([len(data)], dtype=torch.int64)
    dist.broadcast(n, 0)
    buf = torch.frombuffer(bytearray(data), dtype=torch.uint8) if world.is_main else \
        torch.empty(int(n.item()), dtype=torch.uint8)
    dist.broadcast(buf, 0)
    return obj if world.is_main else pickle.loads(buf.numpy().tobytes())


# --- opening a run in every process -------------------------------------------------------------------------
_SCRATCH: list[str] = []


def scratch_folder(world: World) -> str:
    """A private folder for a non-zero rank's would-be writes, removed when the process exits."""
    if not _SCRATCH:
        _SCRATCH.append(tempfile.mkdtemp(prefix=f"colorize-rank{world.rank}-"))
        atexit.register(shutil.rmtree, _SCRATCH[0], True)
    return _SCRATCH[0]


def check_world(cfg: TrainConfig, world: World) -> None:
    """Refuse a global batch that does not split evenly over the processes."""
    if world.active and cfg.batch_size % world.size:
        raise ConfigError(f"--batch-size {cfg.batch_size} is the global batch and must be a multiple of the "
                          f"{world.size} processes (each takes batch-size / {world.size} images per step)")


def before_training(world: World, cfg: TrainConfig, run_path: Any, progress: bool) -> str | None:
    """The method's work before training (``Method.before_training``), done once, by rank 0 alone; the settings it
    fills in reach every process."""
    from core.methods import METHODS

    note = None
    if world.is_main:  # a run it starts (NoGAN's classifier) trains in this process alone
        note = METHODS[cfg.model].before_training(cfg, run_path, progress)
    note, options = broadcast_object(world, (note, dict(cfg.options)))
    cfg.options = options
    return note


# --- the networks -------------------------------------------------------------------------------------------
def wrap_networks(method: Method, world: World) -> None:
    """Wrap every trained network of ``method`` in ``DistributedDataParallel`` for its training steps (the method
    keeps the plain ones for inference and checkpoints). On CUDA, BatchNorm becomes ``SyncBatchNorm`` first, so
    it normalises with the statistics of the whole global batch; torch's SyncBatchNorm runs on GPUs only, so on
    the CPU each process normalises its own share (DDP keeps rank 0's running statistics on every process)."""
    if not world.active:
        return
    from torch.nn.parallel import DistributedDataParallel

    cuda = method.device.type == "cuda"
    if cuda:  # the same parameter and buffer tensors move into the new layers, so the optimisers still hold them
        for name, net in method.nets.items():
            method.nets[name] = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    ids = [method.device.index if method.device.index is not None else torch.cuda.current_device()] if cuda \
        else None
    method.wrap_networks(lambda net: DistributedDataParallel(net, device_ids=ids, forward_sync_buffers=True))


def gather(world: World, obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process."""
    if not world.active:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def shard(world: World, n: int) -> slice:
    """This process's contiguous share of ``n`` items (validation): rank order gives the items in order."""
    per = -(-n // world.size)
    return slice(min(n, world.rank * per), min(n, (world.rank + 1) * per))


# --- every step ---------------------------------------------------------------------------------------------
class StepSync:
    """After every step, the losses averaged over the processes and whether any of them was asked to stop."""

    def __init__(self, world: World, stop: StopFlag) -> None:
        self.world, self.stop, self._agreed = world, stop, False

    @property
    def stopping(self) -> bool:
        """Whether the run stops before the next step (the same answer in every process)."""
        return self._agreed if self.world.active else self.stop.signal is not None

    def losses(self, losses: dict[str, float]) -> dict[str, float]:
        """``losses`` averaged over the processes (one all-reduce, which also carries the stop requests)."""
        if not self.world.active:
            return losses
        keys = list(losses)
        t = torch.tensor([float(self.stop.signal is not None), *(losses[k] for k in keys)], dtype=torch.float64)
        dist.all_reduce(t)
        self._agreed = bool(t[0] > 0)
        return {k: float(v) / self.world.size for k, v in zip(keys, t[1:].tolist())}
