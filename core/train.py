"""The training engine: one loop drives every registered method, phase by phase.

``python -m core.train --model {unet,dcgan,nogan,classifier} --source SOURCE --split {random,hue} --epochs N
--out RUN_DIR [--resume] ...`` prepares the data once (Lab on the device, no per-batch colour conversion),
then optimises, validates, writes status.json, metrics.jsonl, samples and checkpoints into RUN_DIR.
SIGTERM ends the run cleanly as ``cancelled`` after saving; ``--resume`` continues from last.pt.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.checkpoint import (
    FORMAT_TRAINING,
    VERSION,
    CheckpointError,
    generator_state,
    load_checkpoint,
    save_checkpoint,
    weights_payload,
)
from core.colour import uint8_to_model
from core.config import TrainConfig
from core.data import PreparedData, prepare
from core.figures import picture_grid, save_png
from core.methods import METHODS, Method, Phase, build_method
from core.runs import RunDir, machine_description
from core.sources import DataSourceError
from core.splits import spread_subset


class TrainingError(Exception):
    """A run cannot start or had to stop (bad settings, NaN loss); the message says what to do."""


def default_threads() -> int:
    """CPU threads for a run without ``--threads``: the cores not already busy (1-minute load average), at least 1.

    OpenMP threads that share their cores with other busy processes wait at every barrier for a partner that
    is not running, so on a loaded machine fewer threads train faster than one per core.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, cores - busy)


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    return torch.device(name)


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


def prepare_run_data(cfg: TrainConfig, progress: bool = False) -> PreparedData:
    """The data set and split a run's configuration names."""
    return prepare(cfg.source, cfg.split, cfg.val_fraction, cfg.seed, cfg.gray_threshold, size=cfg.size,
                   progress=progress)


def run_subsets(cfg: TrainConfig, prepared: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the training and validation images a run uses: draws fixed by its seed when limited."""
    return (spread_subset(len(prepared.labels("train")), cfg.limit, cfg.seed),
            spread_subset(len(prepared.labels("val")), cfg.val_limit, cfg.seed))


def load_training_data(cfg: TrainConfig, device: torch.device, progress: bool = True,
                       ) -> tuple[PreparedData, Tensors, Tensors]:
    """Prepare the split and move train and validation subsets to the device, converted to Lab once."""
    prepared = prepare_run_data(cfg, progress)
    train_idx, val_idx = run_subsets(cfg, prepared)
    train = Tensors.from_images(prepared.images("train")[train_idx], prepared.labels("train")[train_idx], device)
    val = Tensors.from_images(prepared.images("val")[val_idx], prepared.labels("val")[val_idx], device)
    if len(train) < 2:
        raise TrainingError(f"only {len(train)} training images after the split; give more data or a larger --limit")
    if len(val) == 0:
        raise TrainingError("the validation subset is empty; raise --val-fraction or give more images")
    return prepared, train, val


@torch.no_grad()
def validate(method: Method, val: Tensors, batch_size: int = 512) -> dict[str, float]:
    """Validation figures: loss and colour metrics for colorizers, loss and accuracy for the classifier.

    ``score`` is the number best.pt is chosen by (higher is better).
    """
    if not method.is_colorizer:
        logits = torch.cat([method.logits(val.rgb[i : i + batch_size].float() / 255.0)
                            for i in range(0, len(val), batch_size)])
        ce = torch.nn.functional.cross_entropy(logits, val.label).item()
        acc = (logits.argmax(1) == val.label).float().mean().item() * 100.0
        return {"val_loss": ce, "accuracy": acc, "score": acc}
    from core.metrics import compute_metrics, validation_score

    pred = torch.cat([method.predict(val.L[i : i + batch_size]) for i in range(0, len(val), batch_size)])
    metrics = compute_metrics(val.L.cpu(), pred.cpu(), val.ab.cpu(), ssim=False)
    out = {"val_loss": torch.nn.functional.mse_loss(pred, val.ab).item(),
           "val_l1": torch.nn.functional.l1_loss(pred, val.ab).item()}
    out |= {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
    out["score"] = float(validation_score(metrics))
    return out


@torch.no_grad()
def sample_grid(method: Method, val: Tensors, n: int) -> np.ndarray:
    """Rows of gray | predicted | truth for the first ``n`` validation images."""
    L, ab = val.L[:n], val.ab[:n]
    return picture_grid(L, {"predicted": method.predict(L)}, ab, scale=3)


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


def epoch_permutation(seed: int, phase_index: int, epoch: int, n: int) -> torch.Tensor:
    """The order of training images in one epoch of one phase: a pure function of the seed, so resume repeats it."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + phase_index * 10_007 + epoch)
    return torch.randperm(n, generator=g)


def flip_mask(seed: int, step: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 7_919 + step + 1)
    return torch.rand(n, generator=g) < 0.5


class _StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between steps and ends the run cleanly."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, _frame: object) -> None:
        self.signal = signum


def ensure_feature_net(cfg: TrainConfig, run: RunDir, progress: bool) -> str | None:
    """For NoGAN without a feature network: train a small classifier first, inside the run. Returns a note."""
    if cfg.model != "nogan" or cfg.feature_net not in ("auto",):
        return None
    from core.methods.nogan import resolve_feature_net

    net, why = resolve_feature_net(cfg)
    if net is not None:
        return f"feature network: {why}"
    sub = run.path / "feature_net"
    print(f"{why}: training a small classifier first (1 epoch, width 16) in {sub}", flush=True)
    run.write_status(phase="feature_net", message=f"{why}: training a small classifier first")
    sub_cfg = TrainConfig(model="classifier", source=cfg.source, split=cfg.split, val_fraction=cfg.val_fraction,
                          gray_threshold=cfg.gray_threshold, seed=cfg.seed, epochs=1, limit=cfg.limit,
                          val_limit=cfg.val_limit, width=16, batch_size=cfg.batch_size, device=cfg.device,
                          threads=cfg.threads, size=cfg.size)
    final = train(sub_cfg, sub, resume=(sub / "config.json").is_file(), progress=progress)
    cfg.feature_net = str(sub / "checkpoints" / "best.pt")
    acc = final.get("best_score") or 0.0
    return f"feature network: classifier trained first in this run, validation accuracy {acc:.1f}%"


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


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True,
          max_steps: int | None = None) -> dict:
    """Run (or resume) training into ``out``; returns the final status. ``max_steps`` stops early (tests).

    Any error marks the run ``failed`` with a message before it propagates, so no run is left "running".
    """
    try:
        return _train(cfg, out, resume, progress, max_steps)
    except BaseException as e:
        run = RunDir(Path(out))
        if run.status().get("state") in ("starting", "running"):
            run.write_status(state="failed", message=str(e) if isinstance(e, TrainingError) else
                             f"{type(e).__name__}: {e}", finished=time.time())
        raise


def _train(cfg: TrainConfig, out: str | Path, resume: bool, progress: bool, max_steps: int | None) -> dict:
    run = RunDir(Path(out))
    start_step, ckpt = 0, None
    if resume:
        if not run.exists():
            raise TrainingError(f"nothing to resume in {run.path}: it has no config.json")
        saved = TrainConfig.load(run.config)
        saved.epochs = cfg.epochs if cfg.epochs != saved.epochs and cfg.epochs > saved.epochs else saved.epochs
        cfg = saved
        if run.last.is_file():
            ckpt = load_checkpoint(run.last)
            start_step = int(ckpt["step"])
    elif run.exists():
        raise TrainingError(f"{run.path} already holds a run; use --resume to continue it or choose another --out")
    run.path.mkdir(parents=True, exist_ok=True)
    if cfg.model not in METHODS:
        raise TrainingError(f"unknown model {cfg.model!r}; choose one of {sorted(METHODS)}")

    torch.manual_seed(cfg.seed)
    threads = cfg.threads or default_threads()
    torch.set_num_threads(threads)
    device = select_device(cfg.device)
    run.write_status(state="running", pid=os.getpid(), model=cfg.model, phase="data", message="preparing data",
                     started=run.status().get("started", time.time()), out=str(run.path),
                     machine=machine_description(), device=str(device))
    note = ensure_feature_net(cfg, run, progress)
    torch.set_num_threads(threads)  # a feature-network run inside this one may have chosen its own
    cfg.save(run.config)
    prepared, train_data, val_data = load_training_data(cfg, device, progress)
    prepared.split.save(run.split)

    method = build_method(cfg, device)
    if cfg.compile:
        for k, net in method.nets.items():
            method.nets[k] = torch.compile(net)
    bs = min(cfg.batch_size, len(train_data))
    spe = max(1, len(train_data) // bs)
    phases = method.phases(spe)
    total = sum(p.steps for p in phases)
    best_score, best_step = -math.inf, -1
    if ckpt is not None:
        method.load_state_dict(ckpt["state"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        best_score, best_step = float(ckpt.get("best_score", -math.inf)), int(ckpt.get("best_step", -1))
        run.truncate_metrics(start_step)
    else:
        if cfg.init:
            init_generator(method, cfg.init)
        if run.metrics_file.exists():
            run.metrics_file.unlink()

    stop = _StopFlag()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)
    bar = tqdm(total=total, initial=start_step, disable=not progress or not sys.stderr.isatty(), dynamic_ncols=True)
    header = f"{cfg.model}: {len(train_data)} train / {len(val_data)} val images, {spe} steps per epoch, " \
             f"{total} steps in {len(phases)} phase(s) {[p.name for p in phases]} on {device}"
    print(header + (f"; {note}" if note else ""), flush=True)
    run.write_status(state="running", total_steps=total, steps_per_epoch=spe, step=start_step,
                     epoch=start_step / spe, message=header, note=note)

    step, phase_start, last_metrics = start_step, 0, ckpt.get("metrics", {}) if ckpt else {}
    t_window, n_window, t_status = time.perf_counter(), 0, 0.0
    speed = float(run.status().get("images_per_s") or 0.0)

    def checkpoint_payload(phase: Phase) -> dict:
        return {"format": FORMAT_TRAINING, "version": VERSION, "method": cfg.model, "config": cfg.to_dict(),
                "step": step, "epoch": step / spe, "phase": phase.name, "metrics": last_metrics,
                "state": method.state_dict(), "rng": {"torch": torch.get_rng_state()},
                "best_score": best_score, "best_step": best_step}

    def finish(state: str, message: str) -> dict:
        bar.close()
        for s, h in previous.items():
            signal.signal(s, h)
        print(message, flush=True)
        return run.write_status(state=state, message=message, step=step, epoch=step / spe, eta_s=0.0,
                                finished=time.time(), best_score=best_score if best_step >= 0 else None,
                                best_step=best_step)

    try:
        for phase_index, phase in enumerate(phases):
            phase_end = phase_start + phase.steps
            if step >= phase_end:
                phase_start = phase_end
                continue
            method.set_phase(phase.name)
            run.write_status(phase=phase.name, message=f"phase {phase_index + 1}/{len(phases)}: {phase.name}")
            perm_epoch, perm = -1, None
            while step < phase_end:
                if stop.signal is not None or (max_steps is not None and step >= max_steps):
                    save_checkpoint(checkpoint_payload(phase), run.last)
                    why = "cancelled by signal" if stop.signal is not None else f"stopped after {step} steps"
                    return finish("cancelled", f"{why}; last.pt saved at step {step}, --resume continues")
                local = step - phase_start
                if phase_index == 0 and cfg.lr_decay_epochs > 0:
                    set_decayed_lr(method, decay_factor(local, phase.steps, round(cfg.lr_decay_epochs * spe)))
                if local // spe != perm_epoch:
                    perm_epoch = local // spe
                    perm = epoch_permutation(cfg.seed, phase_index, perm_epoch, len(train_data))
                idx = perm[(local % spe) * bs : (local % spe + 1) * bs].to(device)
                flips = flip_mask(cfg.seed, step, len(idx)).to(device) if cfg.flip else None
                method.set_input(train_data.batch(idx, method.needs, flips, cfg.channels_last))
                with autocast:
                    losses = method.optimize()
                bad = [k for k, v in losses.items() if not math.isfinite(v)]
                if bad:
                    raise TrainingError(f"loss {bad[0]} became {losses[bad[0]]} at step {step + 1} "
                                        f"(phase {phase.name}); lower --lr or check the data")
                step += 1
                n_window += len(idx)
                bar.update(1)
                if step % cfg.log_every == 0 or step == phase_end:
                    run.append_metrics({"type": "step", "step": step, "epoch": step / spe, "phase": phase.name,
                                        "time": time.time(), **losses})
                    bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
                now = time.perf_counter()
                if now - t_status > 2.0:
                    if now - t_window > 1.0:
                        speed = n_window / (now - t_window)
                        t_window, n_window = now, 0
                    eta = (total - step) * bs / speed if speed > 0 else None
                    run.write_status(step=step, epoch=step / spe, phase=phase.name, images_per_s=speed, eta_s=eta)
                    t_status = now
                done_in_phase = step - phase_start
                if done_in_phase % phase.eval_every == 0 or step == phase_end:
                    last_metrics = validate(method, val_data)
                    record = {"type": "val", "step": step, "epoch": step / spe, "phase": phase.name,
                              "time": time.time(), **last_metrics}
                    run.append_metrics(record)
                    name = f"epoch_{round(step / spe):03d}" if phase.eval_every == spe and phase_index == 0 \
                        else f"{phase.name}_step_{step:06d}"
                    if method.is_colorizer:
                        save_png(sample_grid(method, val_data, cfg.n_samples), run.samples / f"{name}.png")
                    if phase.keep_best and last_metrics["score"] > best_score:
                        best_score, best_step = last_metrics["score"], step
                        save_checkpoint(checkpoint_payload(phase), run.best)
                    save_checkpoint(checkpoint_payload(phase), run.last)
                    if method.is_colorizer:  # keep every validated generator (weights only), so that any point
                        # of the run (NoGAN's inflection, a GAN's most colourful epoch still beating gray) can be
                        # picked afterwards: python -m core.study pick
                        save_checkpoint(weights_payload(checkpoint_payload(phase)),
                                        run.checkpoints / phase.name / f"step_{step:06d}.pt")
                    msg = f"step {step}/{total} ({phase.name}) " + ", ".join(
                        f"{k} {v:.4g}" for k, v in last_metrics.items() if k in ("val_loss", "auc_ab",
                                                                                "colorfulness_ratio", "accuracy"))
                    if not bar.disable:
                        bar.write(msg)
                    else:
                        print(msg, flush=True)
                    run.write_status(message=msg, best_score=best_score, best_step=best_step, last_val=last_metrics)
            phase_start = phase_end
        if best_step < 0:  # no phase kept a best: the final weights are the best there are
            best_score, best_step = last_metrics.get("score", -math.inf), step
            save_checkpoint(checkpoint_payload(phases[-1]), run.best)
        return finish("completed", f"completed {step} steps; best score {best_score:.4g} at step {best_step}")
    except BaseException as e:
        finish("failed", str(e) if isinstance(e, TrainingError) else f"{type(e).__name__}: {e}")
        raise


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m core.train", description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(METHODS), default=d.model)
    p.add_argument("--source", default=d.source, help="cifar10, sample, or a folder/archive path")
    p.add_argument("--split", choices=("random", "hue"), default=d.split)
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--gray-threshold", type=float, default=d.gray_threshold)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--limit", type=int, default=None,
                   help="use at most N training images (a random draw with --seed, every class in proportion)")
    p.add_argument("--val-limit", type=int, default=None,
                   help="validate on at most N images (a random draw with --seed)")
    p.add_argument("--init", default=None, help="start the generator from this checkpoint's generator weights "
                   "(e.g. NoGAN with --epochs 0 runs only the critic and GAN phases over an existing generator)")
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--disc-width", type=int, default=d.disc_width)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the method's)")
    p.add_argument("--beta1", type=float, default=None)
    p.add_argument("--lr-decay-epochs", type=float, default=d.lr_decay_epochs,
                   help="fall linearly to zero over the last N epochs (pix2pix's schedule; NoGAN: of phase 1)")
    p.add_argument("--l1-weight", type=float, default=d.l1_weight)
    p.add_argument("--real-label", type=float, default=d.real_label, help="0.9 for one-sided label smoothing")
    p.add_argument("--feature-net", default=d.feature_net, help="auto, vgg, or a classifier checkpoint")
    p.add_argument("--feature-weight", type=float, default=d.feature_weight)
    p.add_argument("--feature-layers", type=int, nargs="+", default=d.feature_layers)
    p.add_argument("--feature-layer-weights", type=float, nargs="+", default=d.feature_layer_weights)
    p.add_argument("--critic-epochs", type=float, default=d.critic_epochs)
    p.add_argument("--gan-fraction", type=float, default=d.gan_fraction)
    p.add_argument("--gan-checkpoints", type=int, default=d.gan_checkpoints)
    p.add_argument("--gan-l1-weight", type=float, default=d.gan_l1_weight,
                   help="NoGAN: extra weight of the L1 term on a,b in the GAN phase, as pix2pix's lambda (default 0)")
    p.add_argument("--gan-lr", type=float, default=d.gan_lr, help="NoGAN: learning rate of the GAN phase")
    p.add_argument("--no-flip", dest="flip", action="store_false")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: the cores not already busy)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--val-per-epoch", type=int, default=d.val_per_epoch,
                   help="validations (each keeps its generator) per epoch of a one-phase run; default 1")
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = TrainConfig.from_dict({k: v for k, v in vars(args).items() if v is not None})
    try:
        final = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    except (TrainingError, DataSourceError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0 if final.get("state") in ("completed", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main())
