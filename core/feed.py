"""Training batches, resident or streamed, the same batches either way.

``resident``: the run's training and validation images are converted to model-space Lab once and held as
tensors on the device (:class:`Tensors`); a batch is an index into them. ``stream``: the images stay
in the source's on-disk uint8 cache (``<part>_images.npy``, written once and atomically by
:mod:`core.sources`), memory-mapped; a torch ``DataLoader`` (worker processes, pinned memory on CUDA) reads each
batch's rows and converts them to Lab with :func:`core.colour.uint8_to_model`. :func:`choose_mode` picks one by
the bytes the resident tensors would take (``--data-mode auto``), against half the device's free memory.

Both modes draw the same rows for every step (:class:`StepBatches`: the seeded epoch permutation of
``epoch_permutation``, cut into global batches of ``--batch-size``; under torchrun each process takes
its equal slice of every global batch, as a ``DistributedSampler`` with ``set_epoch`` would give each its shard),
then finish them with the same code (``Tensors.batch``: seeded flips, :func:`flip_mask`) and the same seeded
random-resized crops (:func:`crop_boxes`, ``--crop-scale``), so a run is the same in either mode and in any
number of processes.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.colour import uint8_to_model
from core.config import TrainConfig
from core.data import PreparedData, prepare_for
from core.distributed import World, local_first
from core.sources import images_file, release_pages
from core.splits import spread_subset

MODES = ("resident", "stream")
BYTES_PER_PIXEL = 4 + 2 * 4 + 3  # resident tensors: L and ab as float32, RGB as uint8
BYTES_PER_IMAGE = 8  # the int64 label
CROP_RATIO = (3 / 4, 4 / 3)  # aspect range of the random-resized crops, as torchvision's RandomResizedCrop
CROP_FILTER = "bilinear"  # how a crop is resized back to the training size
VAL_PIXELS = 512 * 32 * 32  # pixels of a validation chunk: 512 pictures at 32x32, fewer of larger ones


# --- the data of a run, and the seeded order of its steps -------------------------------------------------
@dataclass
class Tensors:
    """One subset of the data on the device, converted once: model-space L, ab; uint8 RGB; labels."""

    L: torch.Tensor
    ab: torch.Tensor
    rgb: torch.Tensor  # uint8 (N, 3, H, W)
    label: torch.Tensor

    def __len__(self) -> int:
        return len(self.L)

    @classmethod
    def from_images(cls, images: np.ndarray, labels: np.ndarray, device: torch.device) -> Tensors:
        L, ab = uint8_to_model(images)
        rgb = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
        return cls(L.to(device), ab.to(device), rgb.to(device), torch.from_numpy(labels.astype(np.int64)).to(device))

    def take(self, part: slice) -> Tensors:
        """The images of ``part`` (views, no copy)."""
        return Tensors(self.L[part], self.ab[part], self.rgb[part], self.label[part])

    def batch(self, idx: torch.Tensor, needs: tuple[str, ...], flip: torch.Tensor | None,
              channels_last: bool) -> dict[str, torch.Tensor]:
        """The entries a method needs for the images at ``idx``, flipped where ``flip`` is True."""
        out: dict[str, torch.Tensor] = {}
        for key in set(needs) | {"L"}:
            x = getattr(self, key)[idx]
            if key == "rgb":
                x = x.float().div_(255.0)
            if x.ndim == 4:
                if flip is not None:
                    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
            out[key] = x
        return out


def run_subsets(cfg: TrainConfig, prepared: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the training and validation images a run uses: draws fixed by its seed when limited."""
    return (spread_subset(len(prepared.labels("train")), cfg.limit, cfg.seed),
            spread_subset(len(prepared.labels("val")), cfg.val_limit, cfg.seed))


def epoch_permutation(seed: int, phase_index: int, epoch: int, n: int) -> torch.Tensor:
    """The order of training images in one epoch of one phase: a pure function of the seed, so resume repeats it."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + phase_index * 10_007 + epoch)
    return torch.randperm(n, generator=g)


def flip_mask(seed: int, step: int, n: int) -> torch.Tensor:
    """Which of the ``n`` pictures of global step ``step`` are flipped: a pure function of the seed and the step."""
    g = torch.Generator().manual_seed(seed * 7_919 + step + 1)
    return torch.rand(n, generator=g) < 0.5


# --- which mode ----------------------------------------------------------------------------------------------
def resident_bytes(n_images: int, size: int) -> int:
    """Bytes the resident tensors of ``n_images`` pictures of ``size`` x ``size`` take on the device."""
    return n_images * (size * size * BYTES_PER_PIXEL + BYTES_PER_IMAGE)


def free_bytes(device: torch.device) -> int:
    """Free memory of the device: CUDA's free memory, or the host's available memory (``MemAvailable``)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def choose_mode(cfg: TrainConfig, n_images: int, device: torch.device, world: World) -> tuple[str, str]:
    """``resident`` or ``stream`` for a run of ``n_images`` (training + validation) pictures, and why."""
    need = resident_bytes(n_images, cfg.size)
    if cfg.data_mode in MODES:
        return cfg.data_mode, f"--data-mode {cfg.data_mode}; resident tensors would take {need / 1e9:.2f} GB"
    share = 1 if device.type == "cuda" else world.local_size  # each process of a machine holds its own copy
    cap = free_bytes(device) / 2 / share
    what = f"half the free memory of {device.type}" + (f" over {share} processes" if share > 1 else "")
    mode = "resident" if need <= cap else "stream"
    verdict = "within" if mode == "resident" else "above"
    return mode, f"{need / 1e9:.2f} GB of tensors, {verdict} the {cap / 1e9:.2f} GB cap ({what})"


def default_workers(world: World, device: torch.device) -> int:
    """DataLoader workers per process when ``--workers`` is not given. Training on the CPU: the cores of this
    process's share that its torch threads leave free, at most 4 (0: the training process reads, since a worker
    competing with the threads for a core slows every step more than it saves); on CUDA: half the share, 1 to 4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = max(1, cores // max(1, world.local_size))
    if device.type == "cuda":
        return max(1, min(4, share // 2))
    return max(0, min(4, share - torch.get_num_threads()))


# --- the rows of every step ----------------------------------------------------------------------------------
class StepBatches(torch.utils.data.Sampler):
    """Rows of the training subset for local steps ``start``..``end - 1`` of one phase: step ``s`` takes global
    batch ``s % steps_per_epoch`` of epoch ``s // steps_per_epoch``'s permutation, and this process its slice
    ``rank`` of ``world`` equal slices of it."""

    def __init__(self, seed: int, phase_index: int, n: int, batch_size: int, steps_per_epoch: int, start: int,
                 end: int, rank: int = 0, world: int = 1) -> None:
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} does not split over {world} processes")
        self.seed, self.phase_index, self.n = seed, phase_index, n
        self.batch_size, self.steps_per_epoch, self.start, self.end = batch_size, steps_per_epoch, start, end
        self.rank, self.world = rank, world
        self._epoch, self._perm = -1, torch.zeros(0, dtype=torch.int64)

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s permutation (a pure function of the seed, the phase and the epoch)."""
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, epoch_permutation(self.seed, self.phase_index, epoch, self.n)

    def rows(self, local_step: int) -> torch.Tensor:
        """This process's rows of the global batch of ``local_step``."""
        self.set_epoch(local_step // self.steps_per_epoch)
        k = local_step % self.steps_per_epoch
        batch = self._perm[k * self.batch_size : (k + 1) * self.batch_size]
        share = self.batch_size // self.world
        return batch[self.rank * share : (self.rank + 1) * share]

    def __iter__(self) -> Iterator[list[int]]:
        for local in range(self.start, self.end):
            yield self.rows(local).tolist()


# --- random-resized crops ------------------------------------------------------------------------------------
def crop_boxes(seed: int, step: int, n: int, min_scale: float) -> torch.Tensor:
    """(n, 4) crops (left, top, width, height as shares of the side) for step ``step``: area share uniform in
    [min_scale, 1], aspect log-uniform in 3/4..4/3 (narrowed where the picture is too small), position uniform;
    seeded."""
    g = torch.Generator().manual_seed(seed * 104_729 + step + 3)
    u = torch.rand(n, 4, generator=g, dtype=torch.float64)
    area = min_scale + (1.0 - min_scale) * u[:, 0]
    lo, hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    ratio = torch.exp(lo + (hi - lo) * u[:, 1])
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = (area / w).clamp(max=1.0)
    w = area / h  # a crop wider or taller than the picture keeps its area, not its aspect
    return torch.stack(((1.0 - w) * u[:, 2], (1.0 - h) * u[:, 3], w, h), dim=1).float()


def crop_resize(x: torch.Tensor, boxes: torch.Tensor, mode: str = CROP_FILTER) -> torch.Tensor:
    """Each picture of ``x`` (N, C, H, W, float) cut to its box and resized back to H x W (``mode``: bicubic,
    bilinear or nearest; edges repeat)."""
    left, top, w, h = boxes.to(x.device, torch.float32).unbind(1)
    theta = torch.zeros(len(x), 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = w, 2 * left + w - 1
    theta[:, 1, 1], theta[:, 1, 2] = h, 2 * top + h - 1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x.float(), grid, mode=mode, padding_mode="border", align_corners=False).to(x.dtype)


def crop_batch(batch: dict[str, torch.Tensor], boxes: torch.Tensor, mode: str,
               channels_last: bool) -> dict[str, torch.Tensor]:
    """A finished batch with every picture entry cropped and resized (L and RGB kept in range)."""
    out = dict(batch)
    for key, x in batch.items():
        if x.ndim != 4:
            continue
        y = crop_resize(x, boxes, mode)
        if key == "L":
            y = y.clamp_(-1.0, 1.0)
        elif key == "rgb":
            y = y.clamp_(0.0, 1.0)
        out[key] = y.contiguous(memory_format=torch.channels_last) if channels_last else y
    return out


# --- streamed pictures ---------------------------------------------------------------------------------------
class StreamedImages(torch.utils.data.Dataset):
    """One subset's pictures, read from the part's image array (a memory-mapped cache file, opened again in each
    worker process) a batch at a time: ``data[rows]`` gives model-space L, ab, uint8 RGB and labels."""

    def __init__(self, images: np.ndarray, positions: np.ndarray, labels: np.ndarray) -> None:
        self.path = images_file(images)
        self._array: np.ndarray | None = images
        self._pid = os.getpid()
        self.positions = np.asarray(positions, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.size = int(images.shape[1])

    def __len__(self) -> int:
        return len(self.positions)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.path is not None:  # a spawned worker maps the file itself
            state["_array"] = None
        return state

    def _images(self) -> np.ndarray:
        if self.path is not None and (self._array is None or self._pid != os.getpid()) and self.path.is_file():
            self._array, self._pid = np.load(self.path, mmap_mode="r"), os.getpid()
        assert self._array is not None
        return self._array

    def take(self, part: slice) -> StreamedImages:
        """The pictures of ``part`` (the same file, fewer rows)."""
        out = copy.copy(self)
        out.positions, out.labels = self.positions[part], self.labels[part]
        return out

    def read(self, rows: np.ndarray) -> np.ndarray:
        """uint8 (n, H, W, 3) pictures of subset rows ``rows``, read in file order."""
        pos = self.positions[np.asarray(rows, dtype=np.int64)]
        order = np.argsort(pos, kind="stable")
        array = self._images()
        out = np.empty((len(pos), *array.shape[1:]), np.uint8)
        out[order] = array[pos[order]]
        release_pages(array)
        return out

    def __getitem__(self, rows: list[int]) -> dict[str, torch.Tensor]:
        images = self.read(np.asarray(rows, dtype=np.int64))
        L, ab = uint8_to_model(images)
        rgb = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        return {"L": L, "ab": ab, "rgb": rgb, "label": torch.from_numpy(self.labels[np.asarray(rows)])}


def _on(batch: dict[str, torch.Tensor], device: torch.device) -> Tensors:
    t = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return Tensors(t["L"], t["ab"], t["rgb"], t["label"])


def chunks(data: Tensors | StreamedImages, batch_size: int, device: torch.device,
           max_pixels: int | None = VAL_PIXELS) -> Iterator[Tensors]:
    """The subset in order, ``batch_size`` pictures at a time (fewer when they would pass ``max_pixels``), as
    Tensors on ``device`` (validation)."""
    side = data.size if isinstance(data, StreamedImages) else int(data.L.shape[-1])
    if max_pixels is not None:
        batch_size = max(1, min(batch_size, max_pixels // (side * side)))
    for start in range(0, len(data), batch_size):
        if isinstance(data, StreamedImages):
            yield _on(data[list(range(start, min(start + batch_size, len(data))))], device)
        else:
            sl = slice(start, start + batch_size)
            yield Tensors(data.L[sl], data.ab[sl], data.rgb[sl], data.label[sl])


def head(data: Tensors | StreamedImages, n: int, device: torch.device) -> Tensors:
    """The first ``n`` pictures of the subset as Tensors on ``device`` (sample grids)."""
    return next(chunks(data, max(1, n), device, max_pixels=None))


# --- the feed ------------------------------------------------------------------------------------------------
@dataclass
class Feed:
    """A run's data: the prepared split, training and validation subsets in one mode, and the batches of
    every step for this process."""

    cfg: TrainConfig
    prepared: PreparedData
    mode: str
    reason: str
    train: Tensors | StreamedImages
    val: Tensors | StreamedImages
    device: torch.device
    world: World
    batch_size: int  # the global batch: every process takes batch_size / world_size of it
    workers: int = 0

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.n_train // self.batch_size)

    def describe(self) -> str:
        """One line for the log: the mode, why, and the processes."""
        how = "resident on the device" if self.mode == "resident" else \
            f"streamed from the memory-mapped cache by {self.workers} DataLoader worker(s)"
        out = f"data {how} ({self.reason})"
        if self.world.active:
            out += f"; {self.world.size} processes, {self.batch_size // self.world.size} images each per step"
        return out

    def sampler(self, phase_index: int, start: int, end: int) -> StepBatches:
        return StepBatches(self.cfg.seed, phase_index, self.n_train, self.batch_size, self.steps_per_epoch,
                           start, end, self.world.rank, self.world.size)

    def finish(self, raw: Tensors, rows: torch.Tensor, needs: tuple[str, ...], step: int) -> dict[str, torch.Tensor]:
        """The method's batch for global step ``step``: this process's slice of the step's seeded flips and
        crops, applied to ``raw[rows]``."""
        share = self.batch_size // self.world.size
        mine = slice(self.world.rank * share, (self.world.rank + 1) * share)
        flips = flip_mask(self.cfg.seed, step, self.batch_size)[mine].to(self.device) if self.cfg.flip else None
        batch = raw.batch(rows, needs, flips, self.cfg.channels_last)
        if self.cfg.crop_scale < 1.0:
            boxes = crop_boxes(self.cfg.seed, step, self.batch_size, self.cfg.crop_scale)[mine]
            batch = crop_batch(batch, boxes, CROP_FILTER, self.cfg.channels_last)
        return batch

    def batches(self, phase_index: int, phase_start: int, start: int, end: int,
                needs: tuple[str, ...]) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of local steps ``start``..``end - 1`` of the phase that begins at global step
        ``phase_start``, in order."""
        sampler = self.sampler(phase_index, start, end)
        if isinstance(self.train, StreamedImages):
            loader = torch.utils.data.DataLoader(
                self.train, sampler=sampler, batch_size=None, num_workers=self.workers,
                pin_memory=self.device.type == "cuda", prefetch_factor=4 if self.workers else None,
                generator=torch.Generator().manual_seed(self.cfg.seed))  # leaves the global RNG (dropout) alone
            everything = None
            for local, raw in zip(range(start, end), loader):
                if everything is None:
                    everything = torch.arange(len(raw["label"]), device=self.device)
                yield self.finish(_on(raw, self.device), everything, needs, phase_start + local)
            return
        for local, rows in zip(range(start, end), sampler):
            idx = torch.as_tensor(rows, dtype=torch.int64).to(self.device)
            yield self.finish(self.train, idx, needs, phase_start + local)


def open_feed(cfg: TrainConfig, device: torch.device, world: World, progress: bool = True) -> Feed:
    """Prepare the run's split (the first process of each machine decodes and caches, the others then read),
    choose the mode and hold or map its training and validation subsets."""
    from core.train import TrainingError

    with local_first(world):
        prepared = prepare_for(cfg, progress=progress and world.is_main, mmap=True)
    train_idx, val_idx = run_subsets(cfg, prepared)
    if len(train_idx) < 2:
        raise TrainingError(f"only {len(train_idx)} training images after the split; give more data or a larger "
                            "--limit")
    if len(val_idx) == 0:
        raise TrainingError("the validation subset is empty; raise --val-fraction or give more images")
    batch = min(cfg.batch_size, len(train_idx) // world.size * world.size)
    if batch < world.size or cfg.batch_size % world.size:
        raise TrainingError(f"--batch-size {cfg.batch_size} is the global batch and must be a multiple of the "
                            f"{world.size} processes, with at least one image each")
    mode, reason = choose_mode(cfg, len(train_idx) + len(val_idx), device, world)
    parts = {}
    for name, idx in (("train", train_idx), ("val", val_idx)):
        images, positions = prepared.rows(name)
        labels = prepared.labels(name)[idx]
        if mode == "resident":
            parts[name] = Tensors.from_images(images[positions[idx]], labels, device)
            release_pages(images)
        else:
            parts[name] = StreamedImages(images, positions[idx], labels)
    workers = (cfg.workers if cfg.workers is not None else default_workers(world, device)) if mode == "stream" else 0
    return Feed(cfg, prepared, mode, reason, parts["train"], parts["val"], device, world, batch, workers)
