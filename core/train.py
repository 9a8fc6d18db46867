"""The training engine: one loop drives every registered method, phase by phase.

``python -m core.train --model METHOD --source SOURCE --split {random,hue} --epochs N --out RUN_DIR [--resume]
...`` (``--help`` lists every registered method and its options) prepares the data once (Lab on the device, no
per-batch colour conversion, or streamed from the memory-mapped disk cache when it is too large: ``core.feed``),
then optimises, validates, writes status.json, metrics.jsonl, samples and checkpoints into RUN_DIR. SIGTERM ends
the run cleanly as ``cancelled`` after saving; ``--resume`` continues from last.pt.
``torchrun --nproc_per_node=N -m core.train ...`` trains data-parallel in N processes with
DistributedDataParallel (``core.distributed``).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core import distributed
from core.atomic import remove_stale_temporaries
from core.checkpoint import (
    FORMAT_TRAINING,
    VERSION,
    generator_state,
    load_checkpoint,
    save_checkpoint,
    weights_payload,
)
from core.cli import EXIT_BAD_INPUT, EXIT_FAILED, ArgumentParser, run_command
from core.config import ConfigError, Option, TrainConfig, common_options
from core.distributed import SINGLE, World
from core.feed import StreamedImages, Tensors, chunks, head, open_feed
from core.figures import picture_grid, save_png
from core.methods import METHODS, Method, Phase, all_options, build_method, get_method, method_names
from core.precision import autocast_for, choose_precision
from core.precision import describe as describe_precision
from core.runlock import RunLock, RunLockedError
from core.runs import Heartbeat, RunDir, machine_description


class TrainingError(Exception):
    """A run cannot start or had to stop (bad settings, NaN loss); the message says what to do."""


def default_threads(world: World = SINGLE) -> int:
    """CPU threads for a run without ``--threads``: the cores not already busy (1-minute load average), at least 1;
    under torchrun, this process's equal share of its machine's cores.

    OpenMP threads that share their cores with other busy processes wait at every barrier for a partner that
    is not running, so on a loaded machine fewer threads train faster than one per core.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if world.local_size > 1:  # the other processes of the run start at the same moment: the load says nothing yet
        return max(1, cores // world.local_size)
    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, cores - busy)


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    return torch.device(name)


@torch.no_grad()
def validate(method: Method, val: Tensors | StreamedImages, batch_size: int = 512, select: str = "score",
             world: World = SINGLE) -> dict[str, float]:
    """Validation figures: loss and colour metrics for colorizers, loss and accuracy for the classifier, over
    ``val`` (resident or streamed) ``batch_size`` images at a time.

    ``score`` is the number best.pt is chosen by (higher is better; ``select`` says which figure, see
    ``core.metrics.SELECTIONS``; the classifier's is its accuracy). Under torchrun each process predicts its
    share of the images and the per-image figures are gathered in order: every process gets the figures of the
    whole set, the same as one process would compute.
    """
    mine = val.take(distributed.shard(world, len(val)))
    if not method.is_colorizer:
        ce_sum, correct = 0.0, 0
        for c in chunks(mine, batch_size, method.device):
            logits = method.logits(c.rgb.float() / 255.0)
            ce_sum += torch.nn.functional.cross_entropy(logits, c.label, reduction="sum").item()
            correct += int((logits.argmax(1) == c.label).sum().item())
        sums = np.sum(distributed.gather(world, (ce_sum, correct)), axis=0)
        acc = float(sums[1]) / len(val) * 100.0
        return {"val_loss": float(sums[0]) / len(val), "accuracy": acc, "score": acc}
    from core.metrics import aggregate, per_image_metrics, selection_score

    per_image: dict[str, list[np.ndarray]] = {}
    squared = absolute = 0.0
    count = 0
    for c in chunks(mine, batch_size, method.device):
        pred = method.predict(c.L)
        for k, v in per_image_metrics(c.L.cpu(), pred.cpu(), c.ab.cpu(), ssim=False).items():
            per_image.setdefault(k, []).append(v)
        squared += torch.nn.functional.mse_loss(pred, c.ab, reduction="sum").item()
        absolute += torch.nn.functional.l1_loss(pred, c.ab, reduction="sum").item()
        count += c.ab.numel()
    pieces = distributed.gather(world, (per_image, squared, absolute, count))
    joined = {k: np.concatenate([a for p in pieces for a in p[0].get(k, [])]) for k in pieces[0][0]}
    metrics = aggregate(joined)
    total = sum(p[3] for p in pieces)
    out = {"val_loss": sum(p[1] for p in pieces) / total, "val_l1": sum(p[2] for p in pieces) / total}
    out |= {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
    out["score"] = float(selection_score(metrics, select))
    return out


@torch.no_grad()
def sample_grid(method: Method, val: Tensors | StreamedImages, n: int) -> np.ndarray:
    """Rows of gray | predicted | truth for the first ``n`` validation images."""
    first = head(val, n, method.device)
    return picture_grid(first.L, {"predicted": method.predict(first.L)}, first.ab, scale=3)


def decay_factor(local_step: int, phase_steps: int, decay_steps: int) -> float:
    """pix2pix's schedule: the learning rate stays constant, then falls linearly towards zero over the last
    ``decay_steps`` steps of the phase (1.0 throughout when ``decay_steps`` is 0)."""
    decay_steps = min(max(0, decay_steps), phase_steps)
    if decay_steps == 0:
        return 1.0
    return 1.0 - max(0, local_step - (phase_steps - decay_steps)) / decay_steps


def set_decayed_lr(method: Method, factor: float) -> None:
    """Scale every optimiser's learning rate to ``factor`` x its starting value (kept in the optimiser state)."""
    for opt in method.optimizers.values():
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor


class StopFlag:
    """Set by SIGTERM/SIGINT while installed; the loop checks it between steps and ends the run cleanly."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __call__(self, signum: int, _frame: object) -> None:
        self.signal = signum

    def __enter__(self) -> StopFlag:
        self._previous = {s: signal.signal(s, self) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *_exc: object) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)


def init_generator(method: Method, path: str | Path) -> None:
    """Load a checkpoint's generator weights into the method's generator (a fresh run's starting point)."""
    if "generator" not in method.nets:
        raise TrainingError(f"--init needs a method with a generator; {method.name} has none")
    payload = load_checkpoint(path)
    if payload["method"] not in METHODS or not METHODS[payload["method"]].is_colorizer:
        raise TrainingError(f"--init {path} holds a {payload['method']} model, not a colorization generator")
    try:
        method.nets["generator"].load_state_dict(generator_state(payload))
    except RuntimeError as e:
        width = payload.get("config", {}).get("width")
        raise TrainingError(f"--init {path}: its generator (width {width}) does not fit this run's "
                            f"(width {method.cfg.width}); use the same --width") from e


# --- the pieces of a run -----------------------------------------------------------------------------------
@dataclass
class OpenedRun:
    """A run directory ready to train into: its checked configuration and, when resuming, its last.pt."""

    run: RunDir
    cfg: TrainConfig
    lock: RunLock | None  # held by the process that writes the run (rank 0 under torchrun)
    checkpoint: dict | None = None
    note: str = ""
    world: World = SINGLE


def open_run(cfg: TrainConfig | None, out: str | Path, resume: bool = False,
             extend_epochs: int | None = None) -> OpenedRun:
    """Check the settings and open ``out``: a new run, or (``resume``) the run there as it was configured,
    from its last.pt; ``extend_epochs`` above the saved epochs lengthens it. Nothing is written on refusal."""
    run = RunDir(Path(out))
    if run.path.exists() and not run.path.is_dir():
        raise TrainingError(f"--out {run.path} is a file, not a folder; choose a new folder for the run")
    note = ""
    if resume:
        if not run.exists():
            raise TrainingError(f"nothing to resume in {run.path}: it has no config.json")
        cfg = TrainConfig.load(run.config)
        if extend_epochs is not None:
            if extend_epochs < cfg.epochs:
                raise TrainingError(f"--epochs {extend_epochs} is below the run's {cfg.epochs}; a resumed run can "
                                    "only be lengthened")
            if extend_epochs > cfg.epochs:
                note = f"extended from {cfg.epochs} to {extend_epochs} epochs on resume"
                cfg.epochs = extend_epochs
    elif cfg is None:
        raise TrainingError("a new run needs a configuration")
    elif run.exists():
        raise TrainingError(f"{run.path} already holds a run; use --resume to continue it or choose another --out")
    cfg = TrainConfig.from_dict(cfg.to_dict()).checked()  # a copy: hooks may fill in settings
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainingError(f"cannot create the run folder {run.path} ({e.strerror}); choose a writable --out") from e
    if not os.access(run.path, os.W_OK):
        raise TrainingError(f"the run folder {run.path} is not writable; choose a writable --out")
    lock = RunLock(run.path).acquire()  # one writer per run: a second start or resume stops here
    try:
        if not resume and run.exists():  # asked again under the lock: two starts at once cannot both pass
            raise TrainingError(f"{run.path} already holds a run; use --resume to continue it or choose another --out")
        checkpoint = load_checkpoint(run.last) if resume and run.last.is_file() else None
        remove_stale_temporaries(run.path, recursive=True)  # interrupted writes of an earlier process
        if not resume:  # at once, so a process killed from here on leaves a run that --resume continues
            cfg.save(run.config)
    except BaseException:
        lock.release()
        raise
    return OpenedRun(run, cfg, lock, checkpoint, note)


def setup_torch(cfg: TrainConfig, world: World = SINGLE) -> tuple[torch.device, int]:
    """Seed, CPU threads and device of a run (under torchrun, this process's own GPU)."""
    torch.manual_seed(cfg.seed)
    threads = cfg.threads or default_threads(world)
    torch.set_num_threads(threads)
    return distributed.device_for(world, select_device(cfg.device)), threads


@dataclass
class Best:
    """The best validation so far (``step`` -1: none yet)."""

    score: float = -math.inf
    step: int = -1


class CheckpointKeeper:
    """A run's checkpoints, as timm's CheckpointSaver keeps them: ``last.pt``, ``best.pt`` and every validated
    generator (weights only, ``checkpoints/<phase>/step_*.pt``), at most ``keep`` per phase when set (the oldest
    go first). Every file is written atomically. A keeper that does not ``write`` (ranks other than 0) keeps
    nothing."""

    def __init__(self, run: RunDir, keep: int | None = None, write: bool = True) -> None:
        self.run, self.keep, self.write = run, keep, write

    def save_last(self, payload: dict) -> None:
        if self.write:
            save_checkpoint(payload, self.run.last)

    def save_best(self, payload: dict) -> None:
        if self.write:
            save_checkpoint(payload, self.run.best)

    def keep_generator(self, payload: dict, phase: str, step: int) -> Path:
        """Keep the generator validated at ``step``, then drop the oldest kept ones past the cap."""
        path = self.run.checkpoints / phase / f"step_{step:06d}.pt"
        if not self.write:
            return path
        path = save_checkpoint(weights_payload(payload), self.run.checkpoints / phase / f"step_{step:06d}.pt")
        if self.keep is not None:
            for old in sorted(path.parent.glob("step_*.pt"))[: -self.keep or None]:
                old.unlink(missing_ok=True)
        return path


class SpeedMeter:
    """Images per second over windows of at least a second, and the ETA of the steps left."""

    def __init__(self, total_steps: int, batch_size: int, speed: float = 0.0, every_s: float = 2.0) -> None:
        self.total, self.batch_size, self.speed, self.every_s = total_steps, batch_size, speed, every_s
        self._t_window = self._t_report = time.perf_counter()
        self._t_report -= every_s  # the first step reports at once
        self._images = 0

    def update(self, step: int, images: int) -> dict | None:
        """Count a step's images; every ``every_s`` seconds, the figures for status.json (else None)."""
        self._images += images
        now = time.perf_counter()
        if now - self._t_report <= self.every_s:
            return None
        if now - self._t_window > 1.0:
            self.speed = self._images / (now - self._t_window)
            self._t_window, self._images = now, 0
        self._t_report = now
        return {"images_per_s": self.speed, "eta_s": self.eta(step)}

    def eta(self, step: int) -> float | None:
        return (self.total - step) * self.batch_size / self.speed if self.speed > 0 else None


def validate_and_keep(method: Method, val: Tensors | StreamedImages, keeper: CheckpointKeeper, payload: dict,
                      phase: Phase, best: Best, sample_name: str, n_samples: int,
                      log: Callable[[dict[str, float]], None] | None = None,
                      world: World = SINGLE) -> dict[str, float]:
    """Validate, write the sample grid, keep the generator, replace best.pt when the score improved, ``log`` the
    figures, then last.pt (the kept files and the record are on disk before last.pt moves past them, so a run
    killed at any moment resumes without a gap). Under torchrun every process validates its share; only rank 0
    writes."""
    step = int(payload["step"])
    metrics = validate(method, val, select=method.cfg.select, world=world)
    payload["metrics"] = metrics
    if not world.is_main:
        if phase.keep_best and metrics["score"] > best.score:
            best.score, best.step = metrics["score"], step
        return metrics
    if method.is_colorizer and n_samples > 0:
        save_png(sample_grid(method, val, n_samples), keeper.run.samples / f"{sample_name}.png")
    if method.is_colorizer:  # every validated generator, so any point of the run can be picked later
        keeper.keep_generator(payload, phase.name, step)
    if phase.keep_best and metrics["score"] > best.score:
        best.score, best.step = metrics["score"], step
        keeper.save_best(payload | {"best_score": best.score, "best_step": best.step})
    if log is not None:
        log(metrics)
    keeper.save_last(payload | {"best_score": best.score, "best_step": best.step})
    return metrics


def val_message(step: int, total: int, phase: str, metrics: dict[str, float]) -> str:
    return f"step {step}/{total} ({phase}) " + ", ".join(
        f"{k} {v:.4g}" for k, v in metrics.items() if k in ("val_loss", "auc_ab", "colorfulness_ratio", "accuracy"))


# --- the run -----------------------------------------------------------------------------------------------
def _try(fn: Callable[..., object], *args: object) -> None:
    """Call ``fn`` on a failure path, where a second write error must not hide the first."""
    try:
        fn(*args)
    except OSError:
        pass


def train(cfg: TrainConfig | None, out: str | Path, resume: bool = False, progress: bool = True,
          max_steps: int | None = None, extend_epochs: int | None = None) -> dict:
    """Run (or resume) training into ``out``; returns the final status. ``max_steps`` stops early (tests).

    A refused start changes nothing on disk; an error during the run marks it ``failed`` with a message
    before it propagates, so no run is left "running".
    """
    return train_opened(open_run(cfg, out, resume, extend_epochs), progress, max_steps)


def open_run_in_world(cfg: TrainConfig | None, out: str | Path, resume: bool, extend_epochs: int | None,
                      world: World) -> OpenedRun:
    """:func:`open_run` for every process of a torchrun world: rank 0 checks and opens the run directory (its
    lock, its config, its last.pt) and sends the outcome to the others, which write into a scratch folder of
    their own. A refusal on rank 0 is raised, with its message, in every process; nothing is written."""
    if not world.active:
        return open_run(cfg, out, resume, extend_epochs)
    answer: tuple | None = None
    opened = None
    if world.is_main:
        try:
            if cfg is not None:
                distributed.check_world(cfg, world)
            opened = open_run(cfg, out, resume, extend_epochs)
            distributed.check_world(opened.cfg, world)
            answer = (None, opened.cfg.to_dict(), opened.checkpoint, opened.note)
        except (TrainingError, ConfigError, RunLockedError) as e:
            answer = (str(e), None, None, "")
        except BaseException as e:
            answer = (f"{type(e).__name__}: {e}", None, None, "")
            raise
        finally:
            if answer[0] is not None and opened is not None:
                opened.lock.release()
            answer = distributed.broadcast_object(world, answer)
    else:
        answer = distributed.broadcast_object(world)
    error, saved, checkpoint, note = answer
    if error is not None:
        raise TrainingError(error)
    if world.is_main:
        return OpenedRun(opened.run, opened.cfg, opened.lock, opened.checkpoint, opened.note, world)
    scratch = RunDir(Path(distributed.scratch_folder(world)))
    return OpenedRun(scratch, TrainConfig.from_dict(saved), None, checkpoint, note, world)


def train_opened(opened: OpenedRun, progress: bool = True, max_steps: int | None = None) -> dict:
    """Train into a run that :func:`open_run` opened; see :func:`train`."""
    try:
        with Heartbeat(opened.run):
            return _run(opened, progress, max_steps)
    except BaseException as e:
        if opened.run.status().get("state") in ("starting", "running"):
            try:
                opened.run.write_status(state="failed", message=str(e) if isinstance(e, TrainingError) else
                                        f"{type(e).__name__}: {e}", finished=time.time())
            except OSError:  # the disk that failed the run may refuse this too; the lock still says it ended
                pass
        raise
    finally:
        if opened.lock is not None:
            opened.lock.release()


def _run(opened: OpenedRun, progress: bool, max_steps: int | None) -> dict:
    run, cfg, ckpt, world = opened.run, opened.cfg, opened.checkpoint, opened.world
    device, threads = setup_torch(cfg, world)
    run.write_status(state="running", pid=os.getpid(), model=cfg.model, phase="data", message="preparing data",
                     eta_s=None, started=run.status().get("started", time.time()), out=str(run.path),
                     machine=machine_description(), device=str(device), world_size=world.size)
    notes = [opened.note, distributed.before_training(world, cfg, run.path, progress) or ""]
    note = "; ".join(n for n in notes if n)
    torch.set_num_threads(threads)  # a run inside this one (NoGAN's feature network) may have chosen its own
    cfg.world_size = world.size
    cfg.save(run.config)
    feed = open_feed(cfg, device, world, progress and world.is_main)
    prepared, val_data = feed.prepared, feed.val
    prepared.split.save(run.split)

    method = build_method(cfg, device)
    if cfg.compile:
        for k, net in method.nets.items():
            method.nets[k] = torch.compile(net)
    bs, spe = feed.batch_size, feed.steps_per_epoch
    phases = method.phases(spe)
    total = sum(p.steps for p in phases)
    best, step = Best(), 0
    method.start_average()
    if ckpt is not None:
        method.load_state_dict(ckpt["state"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        best, step = Best(float(ckpt.get("best_score", -math.inf)), int(ckpt.get("best_step", -1))), int(ckpt["step"])
        run.truncate_metrics(step)
    else:
        if cfg.init:
            init_generator(method, cfg.init)
        run.metrics_file.unlink(missing_ok=True)
    keeper = CheckpointKeeper(run, cfg.keep_generators, write=world.is_main)
    meter = SpeedMeter(total, bs, float(run.status().get("images_per_s") or 0.0))
    run.write_status(message=f"choosing the precision ({cfg.precision})")
    chosen, precision = "fp32", {}
    if world.is_main:  # measured once, by rank 0 on its own share of a batch, before the networks are wrapped
        first = next(feed.batches(0, 0, 0, 1, method.needs))
        chosen, precision = choose_precision(method, first, device, cfg.precision,
                                             previous=run.status().get("precision") if ckpt is not None else None)
    chosen, precision = distributed.broadcast_object(world, (chosen, precision))
    autocast = autocast_for(chosen, device)
    distributed.wrap_networks(method, world)
    header = f"{cfg.model}: {feed.n_train} train / {len(val_data)} val images at {cfg.size}x{cfg.size}, " \
             f"{spe} steps per epoch, {total} steps in {len(phases)} phase(s) {[p.name for p in phases]} on " \
             f"{device}; {describe_precision(precision)}; {feed.describe()}"
    print(header + (f"; {note}" if note else ""), flush=True)
    run.write_status(state="running", total_steps=total, steps_per_epoch=spe, step=step, epoch=step / spe,
                     message=header, note=note, precision=precision, data_mode=feed.mode, data_reason=feed.reason,
                     data_workers=feed.workers, world_size=world.size)
    metrics = ckpt.get("metrics", {}) if ckpt else {}
    bar = tqdm(total=total, initial=step, disable=not progress or not sys.stderr.isatty(), dynamic_ncols=True)
    say = bar.write if not bar.disable else (lambda m: print(m, flush=True))

    def payload(phase: Phase) -> dict:
        return {"format": FORMAT_TRAINING, "version": VERSION, "method": cfg.model, "config": cfg.to_dict(),
                "step": step, "epoch": step / spe, "phase": phase.name, "metrics": metrics,
                "state": method.state_dict(), "rng": {"torch": torch.get_rng_state()},
                "best_score": best.score, "best_step": best.step}

    def finish(state: str, message: str) -> dict:
        bar.close()
        print(message, flush=True)
        return run.write_status(state=state, message=message, step=step, epoch=step / spe, eta_s=0.0,
                                finished=time.time(), best_score=best.score if best.step >= 0 else None,
                                best_step=best.step)

    with StopFlag() as stop:
        sync = distributed.StepSync(world, stop)
        try:
            phase_start = 0
            for phase_index, phase in enumerate(phases):
                phase_end, phase_start = phase_start + phase.steps, phase_start
                if step >= phase_end:
                    phase_start = phase_end
                    continue
                method.set_phase(phase.name)
                run.write_status(phase=phase.name, message=f"phase {phase_index + 1}/{len(phases)}: {phase.name}")
                batches = None
                while step < phase_end:
                    # 1. stop cleanly when asked (a signal to any of the run's processes stops them all here)
                    if sync.stopping or (max_steps is not None and step >= max_steps):
                        keeper.save_last(payload(phase))
                        why = "cancelled by signal" if stop.signal is not None else f"stopped after {step} steps"
                        return finish("cancelled", f"{why}; last.pt saved at step {step}, --resume continues")
                    # 2. the batch (this epoch's order; this process's share of it), the learning rate of this step
                    local = step - phase_start
                    if phase_index == 0 and cfg.lr_decay_epochs > 0:
                        set_decayed_lr(method, decay_factor(local, phase.steps, round(cfg.lr_decay_epochs * spe)))
                    if batches is None:
                        batches = feed.batches(phase_index, phase_start, local, phase.steps, method.needs)
                    method.set_input(next(batches))
                    # 3. one optimisation step (losses averaged over the processes), guarded against NaN
                    with autocast:
                        losses = sync.losses(method.optimize())
                    method.update_average()
                    bad = [k for k, v in losses.items() if not math.isfinite(v)]
                    if bad:
                        raise TrainingError(f"loss {bad[0]} became {losses[bad[0]]} at step {step + 1} "
                                            f"(phase {phase.name}); lower --lr or check the data")
                    step += 1
                    bar.update(1)
                    # 4. records: losses, speed, validation and checkpoints
                    if step % cfg.log_every == 0 or step == phase_end:
                        run.append_metrics({"type": "step", "step": step, "epoch": step / spe, "phase": phase.name,
                                            "time": time.time(), **losses})
                        bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
                    if (speed := meter.update(step, bs)) is not None:
                        run.write_status(step=step, epoch=step / spe, phase=phase.name, **speed)
                    if (step - phase_start) % phase.eval_every == 0 or step == phase_end:
                        name = f"epoch_{round(step / spe):03d}" if phase.eval_every == spe and phase_index == 0 \
                            else f"{phase.name}_step_{step:06d}"
                        record = {"type": "val", "step": step, "epoch": step / spe, "phase": phase.name}
                        metrics = validate_and_keep(method, val_data, keeper, payload(phase), phase, best, name,
                                                    cfg.n_samples, lambda m, r=record: run.append_metrics(
                                                        r | {"time": time.time(), **m}), world)
                        msg = val_message(step, total, phase.name, metrics)
                        say(msg)
                        run.write_status(message=msg, best_score=best.score, best_step=best.step, last_val=metrics)
                phase_start = phase_end
            if best.step < 0:  # no phase kept a best: the final weights are the best there are
                best.score, best.step = metrics.get("score", -math.inf), step
                keeper.save_best(payload(phases[-1]))
            return finish("completed", f"completed {step} steps; best score {best.score:.4g} at step {best.step}")
        except OSError as e:  # a write failed (disk full, read-only): the files written before are intact
            error = TrainingError(f"could not write {e.filename or 'to the run folder'} ({e.strerror or e}) at step "
                                  f"{step}; the last checkpoint is intact: free space or fix the folder, then --resume")
            _try(finish, "failed", str(error))
            raise error from e
        except BaseException as e:
            _try(finish, "failed", str(e) if isinstance(e, TrainingError) else f"{type(e).__name__}: {e}")
            raise


# --- the command line --------------------------------------------------------------------------------------
RUN_FLAGS = ("out", "resume", "quiet")


def _add_option(group: argparse._ArgumentGroup, opt: Option) -> None:
    """One option as a flag (``--no-X`` for a setting that is on by default); unset flags are left out."""
    if opt.type is bool:
        if opt.default:
            group.add_argument(f"--no-{opt.name.replace('_', '-')}", dest=opt.name, action="store_false",
                               default=argparse.SUPPRESS, help=f"turn off: {opt.help}")
        else:
            group.add_argument(opt.flag, dest=opt.name, action="store_true", default=argparse.SUPPRESS, help=opt.help)
        return
    default = f" (default {opt.default})" if opt.default is not None and "default" not in opt.help else ""
    group.add_argument(opt.flag, dest=opt.name, type=str if opt.list_of else opt.type, choices=opt.choices,
                       nargs="+" if opt.list_of else None, default=argparse.SUPPRESS, help=opt.help + default)


def build_parser() -> argparse.ArgumentParser:
    """The command line, built from TrainConfig's settings and every registered method's own options."""
    p = ArgumentParser(prog="python -m core.train", description=__doc__.splitlines()[0])
    common = p.add_argument_group("settings of every method")
    for opt in common_options():
        if opt.name == "model":
            common.add_argument("--model", dest="model", choices=method_names(), default=argparse.SUPPRESS,
                                help="; ".join(f"{n}: {get_method(n).help}" for n in method_names())
                                + f" (default {opt.default})")
        else:
            _add_option(common, opt)
    for name, (opt, owners) in all_options().items():
        group = p.add_argument_group(f"{name} is an option of " + ", ".join(owners))
        _add_option(group, opt)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt, as it was "
                   "configured; --epochs N (above the saved value) lengthens it, any other setting is refused")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line: only the settings given are present (``vars(ns)``), besides out/resume/quiet."""
    return build_parser().parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The configuration for a new run; options of methods other than ``--model`` are refused by name."""
    given = {k: v for k, v in vars(args).items() if k not in RUN_FLAGS}
    cfg = TrainConfig.from_dict(given)
    owners = all_options()
    foreign = [k for k in given if k in owners and cfg.model not in owners[k][1]]
    if foreign:
        opt, methods = owners[foreign[0]]
        raise ConfigError(f"{opt.flag} is an option of {', '.join(methods)}, not of {cfg.model}; leave it out")
    return cfg.checked()


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 completed or cancelled, 2 bad settings or input (one line, nothing written), 1 failed run.

    Under torchrun every process runs this (``core.distributed``); rank 0 alone prints the log and writes the
    run directory."""

    args = parse_args(argv)
    given = sorted(k for k in vars(args) if k not in RUN_FLAGS)
    world: list[World] = []
    code = run_command(lambda: world.append(distributed.from_env()), bad_input=(ConfigError,))
    if code:
        return code
    if not world[0].is_main:  # the log is rank 0's; errors still reach stderr from every process
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process

    def start() -> OpenedRun:
        distributed.join(world[0])
        if not args.resume:
            # every process checks the settings (the same answer everywhere), rank 0 opens the run
            return open_run_in_world(config_from_args(args), args.out, False, None, world[0])
        extra = [k for k in given if k != "epochs"]
        if extra:
            raise ConfigError(f"--resume continues the run as it was configured; --{extra[0].replace('_', '-')} "
                              "cannot be changed (only --epochs, to lengthen it)")
        return open_run_in_world(None, args.out, True, getattr(args, "epochs", None), world[0])

    opened: list[OpenedRun] = []
    try:
        code = run_command(lambda: opened.append(start()), bad_input=(TrainingError, RunLockedError))
        if code:
            return code

        def body() -> int:
            final = train_opened(opened[0], progress=not args.quiet and world[0].is_main)
            return 0 if final.get("state") in ("completed", "cancelled") else EXIT_FAILED

        code = run_command(body)
        return EXIT_BAD_INPUT if code == EXIT_BAD_INPUT else code
    finally:
        distributed.leave()


if __name__ == "__main__":
    sys.exit(main())
