"""The generic training loop: data, epochs, validation, checkpoints, resume, Ctrl-C, NaN stop, DDP.

Everything method-specific lives in a `Recipe`; the training images are preloaded (`grdnet.data.preload`);
files other than checkpoints are written by epoch callbacks (`grdnet.training.callbacks`). Every random stream
comes from `grdnet.seeds` (keyed by epoch, step, rank), and the checkpoint stores a `ResumeState` with the
synthesis generator's state, so a resumed run — even one interrupted in the middle of an epoch — reaches the
same weights as an uninterrupted one (on CPU).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from grdnet.checkpoint import error_reason, load_checkpoint, remove_stale_temp_files, save_checkpoint, stored_config
from grdnet.config import RunConfig
from grdnet.data import DatasetIndex, index_dataset, load_tensors
from grdnet.errors import CheckpointError, ConfigError, TrainingError
from grdnet.files import writable_folder
from grdnet.methods import get_method
from grdnet.models import build_model
from grdnet.runtime import resolve_device, uses_bf16, versions
from grdnet.seeds import seed_everything, torch_generator
from grdnet.tiling import random_tile_crops
from grdnet.training.callbacks import EpochCallback, RunFiles
from grdnet.training.distributed import DistributedContext
from grdnet.training.loggers import open_logger
from grdnet.training.recipes import StepContext, build_recipe
from grdnet.training.resume import SEED_SCHEME, ResumeState
from grdnet.training.validation import Validator

RESUMABLE_CHANGES = {("train", "epochs"), ("train", "max_minutes"), ("train", "output_dir"), ("train", "logger"),
                     ("train", "log_images_every")}
RUN_FILES = ("best.pt", "last.pt", "config.yaml", "run.json", "log.jsonl", "training_curves.png", "test/metrics.json",
             "test/scores.csv")
"""What a run writes into its folder (the last two by `grdnet test`); a new run refuses a folder holding any
of the first five unless told to overwrite, which removes them all."""
SPLITS = ("train", "validation", "contamination", "known_defects")

FINITE_CHECK_EVERY = 5
"""Steps between checks that the running loss means are finite. The check runs with or without a progress
bar, and under DDP on the means reduced over ranks, so every rank stops at the same step."""


class GracefulInterrupt:
    """While active, the first Ctrl-C (SIGINT) only sets `requested`; the loop saves at the next step
    boundary and stops. A second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "GracefulInterrupt":
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    epochs_done: int
    threshold: float
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = "completed"


class Trainer:
    """Trains `cfg.model.name` on `cfg.data`, writing into `cfg.train.output_dir`.

    The loop writes `last.pt` (with its `ResumeState`, every epoch) and `best.pt` (best validation epoch, with
    its threshold); its epoch callbacks write `config.yaml` (resolved), `run.json` (seed, versions, data
    split), `log.jsonl` (one line per epoch), `training_curves.png` (`RunFiles`) and the `train.logger`'s logs
    (`grdnet.training.loggers`, e.g. `tensorboard/`).
    A folder that already holds a run is refused unless `resume` (continue it: the data split must be the one
    it started with) or `overwrite` (its run files are removed first).
    """

    def __init__(
        self,
        cfg: RunConfig,
        *,
        resume: bool = False,
        show_progress: bool = True,
        index: DatasetIndex | None = None,
        step_callback: Callable[[int, int], None] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.dist = DistributedContext.from_env()
        self.run_dir = Path(cfg.train.output_dir)
        self.resume_state: ResumeState | None = None
        self.resume_weights: dict[str, Any] = {}  # the model, optimizer and scheduler states of last.pt
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; pass one of them")
        previous = [name for name in RUN_FILES[:5] if (self.run_dir / name).exists()]
        if previous and not (resume or overwrite):
            raise ConfigError(
                f"{self.run_dir}: already holds a run ({', '.join(previous)}); continue it with --resume, replace it "
                "with --overwrite, or choose another --output"
            )
        stored_split: dict[str, str] | None = None
        if resume:
            last = load_checkpoint(self.run_dir / "last.pt")
            cfg = self._check_resumable(stored_config(last, self.run_dir / "last.pt"), cfg)
            self.resume_state = ResumeState.from_checkpoint(last, self.run_dir / "last.pt")
            self.resume_weights = {key: last[key] for key in ("model", "optimizers", "schedulers") if key in last}
            stored_split = last.get("split_digest")
        self.cfg = cfg
        self.console = Console(stderr=True, quiet=not (show_progress and self.dist.is_main))
        self.notices = Console(stderr=True, quiet=not self.dist.is_main)  # shown even when quiet: resume hints
        self.show_progress = show_progress and self.dist.is_main
        self.step_callback = step_callback
        self.callbacks: list[EpochCallback] = []
        self.interrupt = GracefulInterrupt()
        self._validation_seconds = 0.0  # duration of the latest validation (0 before the first)
        self._training_seconds = 0.0  # training time (validation excluded) of this run's epochs so far
        self.device = self.dist.device_for(resolve_device(cfg.train.device))
        self.bf16 = self.channels_last = False  # set with the model (`_build`): 'auto' depends on its widths
        self.index = index if index is not None else index_dataset(cfg.data)
        if not self.index.train:
            raise ConfigError("no normal training images found; check --data-root / --category (data.root / data.category)")
        self.split_digest = {name: _digest(paths) for name, paths in self._split().items()}
        if resume:
            self._check_same_split(stored_split)
        if self.dist.is_main:
            self._prepare_run_dir(overwrite)

    def _split(self) -> dict[str, list[str]]:
        """Image paths of each split the run trains or validates on (as run.json stores them)."""
        return {name: [str(s.image) for s in getattr(self.index, name)] for name in SPLITS}

    def _check_same_split(self, stored: dict[str, str] | None) -> None:
        """Refuse to resume when the data split differs from the one the run started with (checkpoints from
        before split digests existed are not checked); the message names the images that changed."""
        if stored is None or stored == self.split_digest:
            return
        try:
            before = json.loads((self.run_dir / "run.json").read_text())["split"]
        except (OSError, ValueError, KeyError):
            before = {}
        now, changes = self._split(), []
        for name in SPLITS:
            if stored.get(name) == self.split_digest[name]:
                continue
            if name not in before:
                changes.append(f"{name}: different images")
                continue
            added = sorted(set(now[name]) - set(before[name]))
            removed = sorted(set(before[name]) - set(now[name]))
            changes.append(f"{name}: {len(added)} added" + (f" (e.g. {added[0]})" if added else "")
                           + f", {len(removed)} removed" + (f" (e.g. {removed[0]})" if removed else ""))
        raise ConfigError(
            f"{self.run_dir}: cannot resume: the dataset changed since the run started ({'; '.join(changes)}); "
            "restore the original images, or start a new run with --overwrite or another --output"
        )

    def _prepare_run_dir(self, overwrite: bool) -> None:
        """Create the run folder and check it is writable (before any training time is spent); remove temp
        files of a killed checkpoint write, and with `overwrite` the previous run's files."""
        writable_folder(self.run_dir)
        for path in remove_stale_temp_files(self.run_dir):
            self.notices.print(f"[yellow]removed {path}, left by an interrupted checkpoint write")
        if overwrite:
            for name in RUN_FILES:
                (self.run_dir / name).unlink(missing_ok=True)

    def _check_disk_space(self) -> None:
        """Refuse to start without room for best.pt, last.pt and a temporary copy (weights plus optimizer state)."""
        model_bytes = sum(t.numel() * t.element_size() for t in self.model.state_dict().values())
        needed = 3 * 3 * model_bytes  # 3 files, each weights + two Adam moments
        free = shutil.disk_usage(self.run_dir).free
        if free < needed:
            raise ConfigError(
                f"{self.run_dir}: only {free / 2**20:.0f} MiB free, the checkpoints need about {needed / 2**20:.0f} MiB; "
                "free disk space or choose another --output"
            )

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _check_resumable(stored: RunConfig, requested: RunConfig) -> RunConfig:
        """Resume with the stored config; only epochs, max_minutes and output_dir may change."""
        old, new = stored.to_dict(), requested.to_dict()
        changed = [
            f"{section}.{key}"
            for section in old
            for key in old[section]
            if old[section][key] != new[section].get(key) and (section, key) not in RESUMABLE_CHANGES
        ]
        if changed:
            raise ConfigError(
                f"cannot resume: settings differ from the interrupted run ({', '.join(changed)}); "
                "resume with the same settings or start a new run in another --output folder"
            )
        merged = stored.to_dict()
        for section, key in RESUMABLE_CHANGES:
            merged[section][key] = new[section][key]
        return RunConfig.from_dict(merged)

    def _build(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.train.seed)
        self.model = build_model(cfg).to(self.device)
        self.bf16 = uses_bf16(cfg.train.precision, self.device, self.model)
        # NHWC on CUDA, and for bf16 on a CPU (oneDNN's AMX kernels engage only in NHWC); fp32 CPU training gains nothing
        self.channels_last = cfg.train.channels_last and (self.device.type == "cuda" or self.bf16)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # "valid" (1 on the image, 0 on "fit" padding) keeps random training tiles on the image.
        self.train_data = load_tensors(self.index.train, cfg.data,
                                       ("image", "roi", "valid") if cfg.data.tile_size else ("image", "roi"))
        context = StepContext(device=self.device, bf16=self.bf16, wrap=self._wrap, log=self.console.log,
                              steps_per_epoch=len(self._batches(0)))
        self.recipe = build_recipe(self.model, cfg, context)
        self.schedulers = {name: self.recipe.make_scheduler(name, opt) for name, opt in self.recipe.optimizers.items()}
        known = self.index.known_defects
        self.known = load_tensors(known, cfg.data, ("image", "mask", "roi")) if known else None
        if self.recipe.class_balanced and self.known is None:
            raise ConfigError(
                f"model '{cfg.model.name}' is supervised and needs defect images; pass --known-defects DIR "
                "(a few real defect images, see docs/known_defects.md)"
            )
        validation_samples = self.index.validation
        if not validation_samples:
            warnings.warn(
                "no validation images (data.val_fraction = 0): validating on training images instead, so the "
                "threshold under-estimates false alarms; set data.val_fraction > 0 for a sound threshold",
                stacklevel=2,
            )
            validation_samples = self.index.train[:64]
        validation = load_tensors(validation_samples, cfg.data, ("image", "roi", "valid"))
        self.validator = Validator(validation["image"], validation["roi"], validation["valid"], cfg, self.device, self.bf16)

    def _wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.cfg.train.compile:
            module = torch.compile(module)
        return self.dist.wrap(module)

    # ------------------------------------------------------------------ state
    def _state(self, epoch: int, step: int, generator: torch.Generator, sums: dict[str, float]) -> dict[str, Any]:
        """The checkpoint: config, weights, optimiser and scheduler states, and the `ResumeState`."""
        resume = ResumeState(epoch=epoch, step=step, epoch_sums=sums, synthesis_rng=generator.get_state(),
                             torch_rng=torch.get_rng_state(), history=self.history, best=self.best,
                             threshold=self.threshold, normal_stats=self.normal_stats)
        return {
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.recipe.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            **resume.to_checkpoint(),
            "versions": versions(),
            "seed": self.cfg.train.seed,
            "split_digest": self.split_digest,
        }

    def _restore(self, resume: ResumeState) -> None:
        """Load the stored weights, optimiser and scheduler states, torch's generator and the history."""
        stored = self.resume_weights
        try:
            self.model.load_state_dict(stored["model"])
            for name, opt in self.recipe.optimizers.items():
                opt.load_state_dict(stored["optimizers"][name])
            for name, sched in self.schedulers.items():
                sched.load_state_dict(stored["schedulers"][name])
        except (KeyError, RuntimeError, ValueError) as error:
            raise CheckpointError(f"{self.run_dir / 'last.pt'}: does not match this model ({error_reason(error)}); "
                                  "start a new run with --overwrite or another --output") from None
        if resume.seed_scheme != SEED_SCHEME:
            self.notices.print(f"[yellow]{self.run_dir / 'last.pt'} was written by an earlier grdnet with other random "
                               "streams; the rest of the run draws from this version's, so it will not repeat an "
                               "uninterrupted run of that version")
        torch.set_rng_state(resume.torch_rng)
        self.history = list(resume.history)
        self.threshold = resume.threshold
        self.normal_stats = resume.normal_stats
        self.best = dict(resume.best)

    def _run_info(self) -> dict[str, Any]:
        """What `run.json` records: seed, versions, device, the data split and its digest."""
        return {
            "seed": self.cfg.train.seed,
            "versions": versions(),
            "device": str(self.device),
            "world_size": self.dist.world_size,
            "bf16": self.bf16,
            "data": self.index.summary(),
            "split": self._split(),
            "split_digest": self.split_digest,
        }

    # ------------------------------------------------------------------ loop
    def _batches(self, epoch: int) -> list[torch.Tensor]:
        """This rank's batches of training indices for `epoch` (same on every run with the same seed)."""
        n = len(self.train_data["image"])
        order = torch.randperm(n, generator=torch_generator(self.cfg.train.seed, "batch_order", epoch))
        shard = order[self.dist.rank :: self.dist.world_size][: n // self.dist.world_size]
        size = self.cfg.train.batch_size
        if get_method(self.cfg.model.name).single_pass:
            return list(shard.split(size))
        count = max(1, len(shard) // size) if len(shard) >= size else 1
        return [shard[i * size : (i + 1) * size] for i in range(count)]

    def _batch(self, indices: torch.Tensor, epoch: int, step: int) -> dict[str, torch.Tensor]:
        """The step's training batch on the device: `image`, `roi` (+ `known_image`, `known_mask`, `known_roi`),
        cropped to random `data.tile_size` windows when tiling (known defects: windows on their defect)."""
        seed = self.cfg.train.seed
        batch = {k: v[indices] for k, v in self.train_data.items()}
        known = None
        if self.known is not None:
            n_known = len(self.known["image"])
            count = len(indices) if self.recipe.class_balanced else min(len(indices), n_known)
            pick = torch.randint(n_known, (count,), generator=torch_generator(seed, "known_defects", epoch, step))
            known = {key: values[pick] for key, values in self.known.items()}
        tile_size = self.cfg.data.tile_size
        if tile_size is not None:
            crops = torch_generator(seed, "tile_crops", epoch, step, self.dist.rank)
            valid = batch.pop("valid")
            batch = random_tile_crops(batch, tile_size, crops, valid=valid)
            if known is not None:
                known = random_tile_crops(known, tile_size, crops, focus=known["mask"])
        if known is not None:
            batch.update({f"known_{key}": value for key, value in known.items()})
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) for k, v in batch.items()}
        return batch

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            disable=not (self.show_progress and self.console.is_terminal),
            transient=True,
        )

    def fit(self) -> TrainResult:
        """Train until `train.epochs` (or `max_minutes`); returns where the checkpoints are."""
        self.dist.start(self.device)
        try:
            with self.interrupt:
                return self._fit()
        finally:
            for callback in self.callbacks:
                callback.close()
            self.dist.stop()

    def _fit(self) -> TrainResult:
        cfg = self.cfg
        self._build()
        if self.dist.is_main:
            self._check_disk_space()
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {}
        self.threshold = float("nan")  # from the latest validation; stored in every checkpoint after it
        self.normal_stats: dict[str, torch.Tensor] | None = None  # likewise (NormalStats.to_state)
        start_epoch, start_step, synth_state, sums = 0, 0, None, {}
        if self.resume_state is not None:
            resume = self.resume_state
            self._restore(resume)
            start_epoch, start_step, sums = resume.epoch, resume.step, dict(resume.epoch_sums)
            # Mid-epoch: continue that epoch's synthesis stream; at an epoch boundary a fresh one is derived.
            synth_state = resume.synthesis_rng if resume.step > 0 else None
            self.console.log(f"resuming {self.run_dir} at epoch {start_epoch + 1}, step {start_step}")
        if self.dist.is_main:
            logger = open_logger(cfg, self.run_dir)
            self.callbacks = [RunFiles(cfg, self.run_dir, self._run_info())] + ([logger] if logger is not None else [])
            for callback in self.callbacks:
                callback.start()
        last_path, best_path = self.run_dir / "last.pt", self.run_dir / "best.pt"
        started = validated_at = time.perf_counter()
        if self.resume_state is None:
            self.recipe.prepare(self.train_data)  # inside the time budget
        stopped = "completed"
        epoch = start_epoch
        self.model.train()
        planned = "?" if cfg.train.max_minutes is not None else str(cfg.train.epochs)  # known after one epoch
        with self._progress() as progress:
            while epoch < cfg.train.epochs:
                batches = self._batches(epoch)
                task = progress.add_task("train", total=len(batches), epoch=f"{epoch + 1}/{planned}", info="")
                generator = torch_generator(cfg.train.seed, "synthesis", epoch, self.dist.rank, device=self.device)
                step = 0
                if synth_state is not None:
                    generator.set_state(synth_state)
                    step, synth_state = start_step, None
                    progress.update(task, completed=step)
                epoch_start = time.perf_counter()
                device_sums: dict[str, torch.Tensor] = {}
                for step in range(step, len(batches)):
                    if self.step_callback is not None:
                        self.step_callback(epoch, step)
                    losses = self.recipe.training_step(self._batch(batches[step], epoch, step), generator)
                    for name, value in losses.items():
                        device_sums[name] = device_sums.get(name, 0.0) + value.float()
                    if step % FINITE_CHECK_EVERY == 0 or step == len(batches) - 1:
                        running = self._reduce({k: float(v) / (step + 1) for k, v in device_sums.items()})
                        self._check_finite(running, epoch, step)
                        progress.update(task, completed=step + 1, info=self._format(running))
                    else:
                        progress.update(task, completed=step + 1)
                    if self.interrupt.requested and step + 1 < len(batches):
                        if get_method(self.cfg.model.name).single_pass:
                            self.console.print("[yellow]interrupted: the one-pass fit was not finished; nothing saved")
                            raise KeyboardInterrupt
                        if self.dist.is_main:
                            partial = self._merge_sums(sums, device_sums)
                            save_checkpoint(self._state(epoch, step + 1, generator, partial), last_path)
                        self.notices.print(
                            f"[yellow]interrupted: state saved to {last_path}; continue with "
                            f"`grdnet train --resume --output {self.run_dir}`"
                        )
                        raise KeyboardInterrupt
                self.recipe.end_epoch()
                totals = self._merge_sums(sums, device_sums)
                sums = {}
                steps = len(batches)
                means = {k: v / steps for k, v in self._reduce(totals).items()}
                self._check_finite(means, epoch, steps - 1)
                for scheduler in self.schedulers.values():
                    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        scheduler.step(self.recipe.monitor(means))
                    else:
                        scheduler.step()
                epoch_seconds = time.perf_counter() - epoch_start
                self._training_seconds += epoch_seconds
                record: dict[str, Any] = {
                    "epoch": epoch + 1,
                    **{f"loss_{k}": v for k, v in means.items()},
                    **{f"lr_{k}": o.param_groups[0]["lr"] for k, o in self.recipe.optimizers.items()},
                    "seconds": round(epoch_seconds, 3),
                    "images_per_s": round(steps * cfg.train.batch_size * self.dist.world_size / max(epoch_seconds, 1e-9), 1),
                }
                is_last = epoch + 1 == cfg.train.epochs
                elapsed = time.perf_counter() - started
                epochs_run = epoch + 1 - start_epoch
                # Stop before an epoch that would overrun the budget (epoch cost: this run's mean so far).
                out_of_time = self._remaining_epochs(elapsed, epochs_run, epoch + 1) == 0 and not is_last
                out_of_time = self._on_any_rank(out_of_time)  # every rank stops at the same epoch
                due = (epoch + 1) % cfg.train.val_every == 0 and self._validation_due(time.perf_counter() - validated_at)
                due = self._on_any_rank(due)  # every rank validates at the same epoch
                if due or is_last or out_of_time:
                    validation_start = time.perf_counter()
                    record.update(self.validator.run(self.model))
                    validated_at = time.perf_counter()
                    self._validation_seconds = validated_at - validation_start
                    self.threshold = record["threshold"]
                    stats = self.validator.normal_stats
                    self.normal_stats = None if stats is None else stats.to_state()
                    if not self.best or record["val_score"] >= self.best["val_score"] or not math.isfinite(self.best["val_score"]):
                        self.best = {"epoch": epoch + 1, "val_score": record["val_score"], "threshold": record["threshold"]}
                        if self.dist.is_main:
                            save_checkpoint(self._state(epoch + 1, 0, generator, {}), best_path)
                self.history.append(record)
                epoch += 1
                if self.dist.is_main:
                    save_checkpoint(self._state(epoch, 0, generator, {}), last_path)
                    self._after_epoch(record, self._eta(elapsed, epochs_run, epoch))
                progress.remove_task(task)
                if self.interrupt.requested:
                    self.notices.print(
                        f"[yellow]interrupted: state saved to {last_path}; continue with "
                        f"`grdnet train --resume --output {self.run_dir}`"
                    )
                    raise KeyboardInterrupt
                if out_of_time and not is_last:
                    stopped = f"time budget of {cfg.train.max_minutes} min reached"
                    self.notices.print(
                        f"[bold yellow]stopped early: {epoch} of {cfg.train.epochs} epochs done, the time budget of "
                        f"{cfg.train.max_minutes} min has no room for another; the checkpoints are those of a shorter training. Continue "
                        f"with `grdnet train --resume --output {self.run_dir}`"
                    )
                    break
        self.dist.barrier()
        return TrainResult(
            run_dir=self.run_dir,
            best_checkpoint=best_path,
            last_checkpoint=last_path,
            epochs_done=epoch,
            threshold=float(self.best.get("threshold", float("nan"))),
            history=self.history,
            stopped=stopped,
        )

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _merge_sums(sums: dict[str, float], device_sums: dict[str, torch.Tensor]) -> dict[str, float]:
        merged = dict(sums)
        for k, v in device_sums.items():
            merged[k] = merged.get(k, 0.0) + float(v)
        return merged

    def _reduce(self, totals: dict[str, float]) -> dict[str, float]:
        """Average per-rank loss sums over ranks (so every rank sees the same NaN check and schedule)."""
        if not self.dist.enabled:
            return totals
        keys = sorted(totals)
        summed = self.dist.sum(torch.tensor([totals[k] for k in keys], dtype=torch.float64, device=self.device))
        return {k: float(v) / self.dist.world_size for k, v in zip(keys, summed.tolist())}

    def _check_finite(self, values: dict[str, float], epoch: int, step: int) -> None:
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            kept = self.run_dir / "last.pt"
            kept_note = f"the last good checkpoint is kept at {kept}" if kept.exists() else "no checkpoint was written yet"
            raise TrainingError(
                f"loss {', '.join(bad)} became {values[bad[0]]} at epoch {epoch + 1}, step {step + 1}; "
                f"training stopped and {kept_note}. " + ("Lower train.lr or use --precision fp32" if self.bf16 else "Lower train.lr (--lr)")
            )

    @staticmethod
    def _format(values: dict[str, float]) -> str:
        return " ".join(f"{k}={v:.4g}" for k, v in values.items())

    def _on_any_rank(self, flag: bool) -> bool:
        """`flag` as the ranks agree on it under DDP: true when it is true on any rank (unchanged otherwise)."""
        if not self.dist.enabled:
            return flag
        total = self.dist.sum(torch.tensor([float(flag)], dtype=torch.float64, device=self.device))
        return bool(total.item() > 0)

    def _validation_due(self, since_last: float) -> bool:
        """With `train.val_share`: whether `since_last` seconds of training since the latest validation are
        enough for validation to stay within its share of the time (always true before the first one)."""
        share = self.cfg.train.val_share
        if share is None or self._validation_seconds == 0.0:
            return True
        return since_last >= self._validation_seconds * (1 - share) / share

    def _epoch_cost(self, epochs_run: int) -> float:
        """Expected seconds of one more epoch: this run's mean training time per epoch plus its share of
        validation (a `val_share` of the time, or the latest validation's duration every `val_every` epochs)."""
        train = self.cfg.train
        per_epoch = self._training_seconds / max(epochs_run, 1)
        if train.val_share is not None:
            return per_epoch / (1 - train.val_share)
        return per_epoch + self._validation_seconds / train.val_every

    def _remaining_epochs(self, elapsed: float, epochs_run: int, epochs_done: int) -> int:
        """Epochs still to run: up to `train.epochs`, and under `train.max_minutes` only as many as fit in
        the time left (`elapsed` seconds so far) at `_epoch_cost`, keeping the latest validation's duration in
        reserve for the final one."""
        remaining = self.cfg.train.epochs - epochs_done
        budget = self.cfg.train.max_minutes
        if budget is None:
            return remaining
        left = budget * 60 - elapsed - self._validation_seconds
        return max(0, min(remaining, int(left // self._epoch_cost(epochs_run))))

    def _eta(self, elapsed: float, epochs_run: int, epochs_done: int) -> str:
        """'N epochs planned, ends ~HH:MM:SS' from `_epoch_cost` and the final validation's expected duration."""
        left = self._remaining_epochs(elapsed, epochs_run, epochs_done)
        end = time.time() + left * self._epoch_cost(epochs_run) + (self._validation_seconds if left else 0.0)
        planned = epochs_done + left
        return f"{planned} epochs planned, ends ~{time.strftime('%H:%M:%S', time.localtime(end))}"

    def _after_epoch(self, record: dict[str, Any], eta: str) -> None:
        line = f"epoch {record['epoch']} " + self._format(
            {k: v for k, v in record.items() if k.startswith(("loss_", "val_score"))}
        ) + f" {record['images_per_s']} img/s; {eta}"
        self.console.log(line)
        for callback in self.callbacks:
            callback.epoch_end(self.history, self.model, self.validator)


def _digest(paths: list[str]) -> str:
    """SHA-256 of a split's image paths in order (the split, not the pixels: files are re-read each run)."""
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()
