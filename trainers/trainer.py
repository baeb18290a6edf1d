"""The training loop: dataset -> Gaussian scene, with a densification strategy, evaluations and a run folder."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import resource
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from render import prepare_renderer, render
from render.paths import orbit_cameras, with_times
from render.writers import write_video
from scenes import SplatScene, load_checkpoint, save_checkpoint, scene_from_state
from scenes.atomic import atomic_path

from .config import TrainConfig
from .curves import plot_training_curves
from .data.dataset import SceneData, View
from .driving_losses import DrivingTerms
from .distributed import StatisticsSync, device_for_rank, init_distributed, scale_schedule
from .device import describe_device, optimizer_state_to_params, peak_gpu_memory_mb, resolve_device, tensors_to
from .evaluation import evaluate
from .gabor_schedule import check_resume_model, gabor_summary, with_gabor_training
from .initialise import initial_scene, resolve_model, temporal_filter, views_per_time
from .losses import depth_l1, photometric_loss_and_mse, psnr_from_mse
from .motion_rigidity import VelocityRigidity, rigidity_weight
from .optim import make_optimizers, means_lr_at
from .stage_timer import StageTimer
from .resolution import check_schedule, downsample_depth, downsample_view, resolution_factor

StepCallback = Callable[["Trainer", int, Dict[str, float]], None]


def peak_memory_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_json(path: Path, payload: object) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str))


class Trainer:
    """Optimises a scene (3D or 4D Gaussians) against a SceneData's training views.

    With config.model == "nerf" the object built is a `trainers.field_trainer.FieldTrainer` (a radiance field)."""

    driving = None  # DrivingTerms for driving logs (set in __init__); None for other data and for FieldTrainer

    def __new__(cls, config: TrainConfig, *args, **kwargs):
        if cls is Trainer and config.model == "nerf":
            from .field_trainer import FieldTrainer

            return super().__new__(FieldTrainer)
        return super().__new__(cls)

    def __init__(self, config: TrainConfig, data: SceneData, scene: Optional[SplatScene] = None):
        if config.batch_size < 1:
            raise ValueError(f"batch_size (--batch-size) must be at least 1, got {config.batch_size}")
        # Data parallelism (trainers/distributed.py): join torchrun's process group, check every rank got the same
        # config, then scale the schedules to the global batch.
        self.dist = init_distributed(config.distributed, config.device, config.dist_timeout_s)
        config = dataclasses.replace(config, device=device_for_rank(self.dist, config.device))
        self.config_hash = self.dist.check_same_config(config)
        self.global_batch = config.batch_size * self.dist.world_size
        config, self.schedule_notes = scale_schedule(config, self.global_batch, config.scale_schedule_with_batch)
        if self.dist.is_main:
            if self.dist.enabled:
                print(f"[dist] {self.dist.world_size} processes x {config.batch_size} view(s) per step, config hash "
                      f"{self.config_hash[:12]} on every rank", flush=True)
            for note in self.schedule_notes:
                print(f"[batch] {note}", flush=True)
        self._stats_sync = StatisticsSync(self.dist)
        self.config = config
        data = DrivingTerms.prepare_data(config.driving, data, config.seed)  # driving logs only (camera-only baseline)
        self.data = data
        self.device = resolve_device(config.device)
        self.stages = StageTimer(enabled=False, device=self.device)  # per-stage timing for benchmarks (off: free)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # the CUDA rasterizer launches on the current device
        torch.manual_seed(config.seed)
        self.model, self.model_reason = resolve_model(config.model, data)
        self.time_filter_note: Optional[str] = None  # 4D runs: the temporal filter chosen and why, for the log
        self.static_note: Optional[str] = None  # 4D runs: how many rows start static
        if scene is None:
            time_filter = None
            if self.model == "gaussian4d":
                time_filter, why = temporal_filter(data, config.time_filter_frames)
                self.time_filter_note = f"{time_filter:.4g} ({why})"
                if config.static_fraction > 0:
                    self.static_note = f"{config.static_fraction:g} of the initial primitives"
            scene = initial_scene(
                data, config.sh_degree, config.init_opacity, config.init_random_points, config.max_init_points,
                config.seed, config.init_random_extent, self.model, config.init_time_scale, config.gabor.num_terms,
                time_filter, config.static_fraction,
            )
        else:
            self.model, self.model_reason = scene.KIND, "given scene"
        self.scene = scene.to(self.device)
        self._apply_scene_training_options()
        # Sky, exposure and LiDAR depth terms (trainers/driving_losses.py); None unless the data is a driving log.
        self.driving = DrivingTerms.create(config.driving, data, self.device)
        background = config.background if config.background is not None else data.background
        self.background = torch.tensor(background, dtype=torch.float32, device=self.device)
        # Training views' tensors on the device, uploaded on first use (the dataset itself stays on the CPU).
        self._device_views: Dict[int, View] = {}
        self._depth_targets: Dict[Tuple[int, int], torch.Tensor] = {}
        self._channel_masks: Dict[Tuple[int, int], torch.Tensor] = {}
        self.scene_scale = data.scene_scale
        time_range = data.time_range or (0.0, 1.0)
        self.time_span = max(time_range[1] - time_range[0], 1e-6)
        self.optimizers = make_optimizers(self.scene, config.lr, self.scene_scale, self.time_span)
        self.strategy = copy.deepcopy(config.strategy)
        self.strategy.total_steps = config.max_steps
        self.strategy = with_gabor_training(self.strategy, self.scene, config.gabor)  # Gabor: + term schedule
        self.strategy.initialise(self.scene, self.scene_scale)
        # 4D scenes: the velocity-rigidity prior (trainers/motion_rigidity.py), once per step, not per view.
        self.rigidity: Optional[VelocityRigidity] = None
        self.rigidity_note: Optional[str] = None
        if self.scene.KIND == "gaussian4d":
            weight, why = rigidity_weight(config.rigidity, views_per_time(data))
            self.rigidity_note = f"{weight:g} ({why})"
            if weight > 0:
                rigidity = dataclasses.replace(config.rigidity, weight=weight)
                self.rigidity = VelocityRigidity(rigidity, self.scene_scale, self.time_span, config.seed)
        self.step = 0
        self.train_seconds = 0.0  # training wall time so far (evaluation excluded), carried across resumes
        self.resolution_schedule = check_schedule(config.coarse_to_fine)
        self.history: List[Dict[str, float]] = []
        self.evaluations: List[Dict[str, object]] = []
        self.callbacks: List[StepCallback] = []
        self.before_step: List[Callable[["Trainer"], None]] = []
        # Held around each step: a live viewer passes its scene lock so it never renders a half-updated scene.
        self.step_guard: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        self._rng = np.random.default_rng(config.seed)
        self._last_good_checkpoint: Optional[Path] = None
        run_name = config.run_name or datetime.now().strftime("%Y-%m-%d_%H%M%S")
        self.run_dir = Path(config.output_dir) / run_name
        if config.resume is not None:
            self.resume(config.resume)

    def resume(self, path: Path) -> None:
        """Restore scene, optimiser, strategy, step and random state from a checkpoint."""
        payload = load_checkpoint(path)
        if payload["scene"].get("kind") == "nerf":
            raise ValueError(f"{path}: checkpoint holds a radiance field; resume it with --model nerf")
        for key in ("optimizers", "step", "rng", "strategy"):
            if key not in payload:
                raise ValueError(f"{path}: checkpoint has no {key!r} entry, so training cannot resume from it")
        self.scene = scene_from_state(payload["scene"]).to(self.device)
        self._apply_scene_training_options()
        check_resume_model(self.config.model, self.scene, path)
        self.model = self.scene.KIND
        self.strategy = with_gabor_training(self.strategy, self.scene, self.config.gabor)
        self.optimizers = make_optimizers(self.scene, self.config.lr, self.scene_scale, self.time_span)
        for name, state in payload["optimizers"].items():
            self.optimizers[name].load_state_dict(state)
            optimizer_state_to_params(self.optimizers[name])
        self.strategy.initialise(self.scene, self.scene_scale)
        self.strategy.load_state_dict(payload["strategy"])
        if self.rigidity is not None:
            if "rigidity" in payload:
                self.rigidity.load_state_dict(payload["rigidity"], self.device)
            else:
                self.rigidity.mark_stale()
        self.step = int(payload["step"])
        self.train_seconds = float(payload.get("train_seconds", 0.0))
        self.evaluations = list(payload.get("evaluations", []))
        self._rng.bit_generator.state = payload["rng"]["numpy"]
        torch.set_rng_state(payload["rng"]["torch"])
        self.history = list(payload.get("history", []))

    def _apply_scene_training_options(self) -> None:
        """Training-only scene settings from the config (4D: how densification splits), on a new or resumed scene."""
        if hasattr(self.scene, "split_in_time"):
            self.scene.split_in_time = self.config.split_in_time
        # 4D scenes with static rows (--static-fraction, or a given / resumed scene that has them) keep them static
        self.holds_static = self.scene.KIND == "gaussian4d" and bool(self.scene.static_rows().any())

    def _train_view(self, index: int) -> View:
        """Training view `index` with the tensors training reads on the device, uploaded once and cached.

        Alpha and depth are only carried when random backgrounds or the depth loss use them. On the CPU the copy
        shares the dataset's tensors.
        """
        cached = self._device_views.get(index)
        if cached is None:
            view = self.data.train_views[index]
            cfg = self.config

            def upload(tensor: Optional[torch.Tensor], needed: bool = True) -> Optional[torch.Tensor]:
                return tensor.to(self.device) if tensor is not None and needed else None

            cached = dataclasses.replace(
                view,
                image=upload(view.image),
                mask=upload(view.mask),
                alpha=upload(view.alpha, cfg.random_background),
                depth=upload(view.depth, cfg.depth_weight > 0),
            )
            self._device_views[index] = cached
        return cached

    def _channel_mask(self, index: int, factor: int, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """View `index`'s (H, W, 1) mask expanded to the image's channels and kept per (view, factor): the loss takes
        a mask of the image's shape (the CPU kernel applies it itself), so no step expands or copies it."""
        key = (index, factor)
        expanded = self._channel_masks.get(key)
        if expanded is None or expanded.shape != image.shape:
            expanded = mask.expand_as(image).contiguous()
            self._channel_masks[key] = expanded
        return expanded

    def _depth_target(self, index: int, factor: int) -> torch.Tensor:
        """Training view `index`'s depth map at 1/factor resolution on the device (downsampled once per factor)."""
        key = (index, factor)
        if key not in self._depth_targets:
            if factor == 1:
                self._depth_targets[key] = self._train_view(index).depth
            else:  # downsample_depth works on the CPU: start from the dataset's copy
                self._depth_targets[key] = downsample_depth(self.data.train_views[index].depth, factor).to(self.device)
        return self._depth_targets[key]

    def _draw_views(self) -> List[Tuple[int, Optional[torch.Tensor]]]:
        """This rank's (view index, random background or None) for the step. Every rank draws the whole global batch
        from the same generator (identical state everywhere) and keeps its own slice."""
        cfg, n = self.config, len(self.data.train_views)
        if self.global_batch == 1:  # the single-view draw order of earlier versions (resumes stay reproducible)
            index = int(self._rng.integers(n))
            background = None
            if cfg.random_background and self.data.train_views[index].alpha is not None:
                background = torch.from_numpy(self._rng.random(3)).float().to(self.device)
            return [(index, background)]
        indices = [int(i) for i in self._rng.integers(n, size=self.global_batch)]
        colours = self._rng.random((self.global_batch, 3)) if cfg.random_background else None
        start = self.dist.rank * cfg.batch_size
        picked = []
        for k in range(start, start + cfg.batch_size):
            background = None
            if colours is not None and self.data.train_views[indices[k]].alpha is not None:
                background = torch.from_numpy(colours[k]).float().to(self.device)
            picked.append((indices[k], background))
        return picked

    def _view_loss(self, index: int, random_background: Optional[torch.Tensor], factor: int):
        """Render training view `index`; returns (loss, MSE, render output, camera). Both losses stay on the device
        (train_step checks them once per step, with the parameters)."""
        cfg = self.config
        view = self._train_view(index)
        background, target = self.background, view.image
        if random_background is not None:
            background = random_background
            target = view.on_background(self.background, background)
        camera, target, mask = downsample_view(view.camera, target, view.mask, factor)
        stage = self.stages
        with stage("render"):
            # The parameters were checked at the end of the last step (and at load): no NaN scan per render.
            out = render(self.scene, camera, background=background, backend=cfg.backend, check_finite=False)
        self.strategy.pre_backward(out.meta)
        with stage("loss"):
            image = out.rgb
            if self.driving is not None:
                image = self.driving.compose(image, out, camera, index, background)
            channel_mask = None if mask is None else self._channel_mask(index, factor, mask, image)
            loss, mse = photometric_loss_and_mse(image, target, cfg.ssim_weight, mask=channel_mask)
            loss = loss + self.strategy.regularisation(self.scene)
            if cfg.depth_weight > 0 and view.depth is not None:
                depth_target = self._depth_target(index, factor)
                if mask is not None:  # masked-out pixels carry no supervision, depth included
                    depth_target = torch.where(mask, depth_target, torch.zeros_like(depth_target))
                loss = loss + cfg.depth_weight * depth_l1(out.depth, out.alpha, depth_target)
            if self.driving is not None:
                loss = loss + self.driving.loss(out, index, factor)
        return loss, mse, out, camera

    def train_step(self) -> Dict[str, float]:
        """One optimisation step on `batch_size` random training views per rank (losses averaged).

        The step reads the device once, at its end (losses, MSEs and the parameters' finiteness together), so a GPU
        runs the whole step without the host waiting on it midway. A non-finite loss is reported by that read, after
        the update it spoiled; checkpoints are written only after good steps, and the error names the last one."""
        cfg = self.config
        step = self.step
        stage = self.stages
        self.scene.active_sh_degree = min(self.scene.sh_degree, self.step // max(cfg.sh_degree_interval, 1))
        for group in self.optimizers["means"].param_groups:
            group["lr"] = means_lr_at(self.step, cfg.max_steps, cfg.lr.means * self.scene_scale, cfg.lr.means_final_ratio)
        for group in self.optimizers["times"].param_groups if "times" in self.optimizers else ():
            group["lr"] = means_lr_at(self.step, cfg.max_steps, cfg.lr.times * self.time_span, cfg.lr.means_final_ratio)
        factor = resolution_factor(self.step, self.resolution_schedule)
        # One backward per view (loss / batch), accumulating into .grad: only one view's graph is alive at a time, and
        # the sum is associated as with one view per process, so 1 process x B views matches B processes bit for bit
        # (power-of-two B) instead of within round-off that Adam amplifies where gradients are near zero.
        views = self._draw_views()
        batch = len(views)
        results = []
        for index, background in views:
            view_loss, mse, out, camera = self._view_loss(index, background, factor)
            with stage("backward"):
                (view_loss if batch == 1 else view_loss / batch).backward()
            results.append((view_loss.detach(), mse, out, camera, index))
        loss = results[0][0] if batch == 1 else torch.stack([r[0] for r in results]).mean()
        if self.rigidity is not None:
            with stage("loss"):
                rigidity = self.rigidity.loss(self.scene, self.step)
            with stage("backward"):
                if rigidity.requires_grad:
                    rigidity.backward()
            loss = loss + rigidity.detach()
        with stage("strategy"):
            self._stats_sync.before(self.strategy)
            for _, _, out, camera, _ in results:
                means2d = out.meta.get("means2d")
                if batch > 1 and means2d is not None and means2d.grad is not None:
                    means2d.grad.mul_(batch)  # each view's own screen gradient, not its 1/batch share of the mean
                self.strategy.post_backward(self.scene, self.optimizers, out.meta, self.step, (camera.width, camera.height))
            self._stats_sync.after(self.strategy, self.step)
        if self.dist.enabled:
            with stage("all-reduce"):
                self.dist.average_gradients(list(self.scene.params.values()), self.step)
        with stage("optimiser"):
            for opt in self.optimizers.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
            if self.driving is not None:
                self.driving.step()
            if self.holds_static:
                self.scene.hold_static()
        self.step += 1
        with stage("strategy"):
            changes = self.strategy.post_step(self.scene, self.optimizers, self.step)
            if self.rigidity is not None and any(changes.values()):
                self.rigidity.mark_stale()
        with stage("checks"):
            losses, mses = self._read_step_values(results, loss, step)
        psnr_value = float(np.mean([psnr_from_mse(mse) for mse in mses]))
        stats = {"loss": losses[-1], "psnr": psnr_value, "num_gaussians": float(len(self.scene)), **changes}
        if factor > 1:
            stats["resolution_factor"] = float(factor)
        return stats

    def _read_step_values(self, results, loss: torch.Tensor, step: int):
        """The step's one device read: each view's loss, the step's loss, the MSEs and one sum per parameter.

        Raises FloatingPointError naming the view whose loss, or the parameter that, became NaN or Inf. Returns
        (view losses then the step loss, MSEs) as floats."""
        sums = [param.detach().sum().float().reshape(1) for param in self.scene.params.values()]
        values = torch.cat([r[0].float().reshape(1) for r in results] + [loss.detach().float().reshape(1)]
                           + [r[1].float().reshape(1) for r in results] + sums).cpu().tolist()
        n = len(results)
        losses, mses, param_sums = values[:n + 1], values[n + 1:2 * n + 1], values[2 * n + 1:]
        for value, (_, _, _, _, index) in zip(losses, results):
            if not math.isfinite(value):
                view = self.data.train_views[index]
                raise FloatingPointError(f"loss became {value} at step {step} (view {view.name}){self._kept_note()}")
        if not math.isfinite(losses[-1]):  # the views' losses are finite: a regulariser (e.g. velocity rigidity) is not
            raise FloatingPointError(f"loss became {losses[-1]} at step {step} (regularisation){self._kept_note()}")
        # A NaN or Inf anywhere makes a parameter's sum non-finite; only then (or on a sum that overflowed) look
        # element by element, in the parameters whose sum is not finite.
        for (name, param), total in zip(self.scene.params.items(), param_sums):
            if not math.isfinite(total) and not bool(torch.isfinite(param).all()):
                raise FloatingPointError(f"parameter {name!r} became NaN or Inf at step {self.step}{self._kept_note()}")
        return losses, mses

    def _kept_note(self) -> str:
        return f"; the last good checkpoint is {self._last_good_checkpoint}" if self._last_good_checkpoint else ""

    def train(self) -> Dict[str, object]:
        """Run to `max_steps` (or `max_seconds`), then evaluate and write the run folder. Returns the final metrics."""
        cfg = self.config
        main = self.dist.is_main  # only rank 0 writes the run folder
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / "config.json", dataclasses.asdict(cfg))
        prepare_renderer(cfg.backend, self.device)  # a first-use compile must not count as training time
        started = time.perf_counter() - self.train_seconds  # training time counts across resumes
        eval_seconds = 0.0
        pending_marks = sorted(m for m in cfg.eval_at_seconds if m > self.train_seconds)
        bar = None
        if cfg.progress and main:
            from tqdm import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        while self.step < cfg.max_steps:
            self.train_seconds = time.perf_counter() - started - eval_seconds
            if cfg.max_seconds is not None and self.dist.any(
                self.train_seconds >= cfg.max_seconds, f"stop vote at step {self.step}", self.device
            ):
                break  # every rank stops at the same step, even when their clocks disagree
            for hook in self.before_step:
                hook(self)
            with self.step_guard():
                stats = self.train_step()
            self.train_seconds = time.perf_counter() - started - eval_seconds
            stats.update(step=self.step, seconds=self.train_seconds)
            self.history.append(stats)
            for callback in self.callbacks:
                callback(self, self.step, stats)
            if bar is not None:
                bar.set_postfix(**self.progress_postfix())
                bar.update(1)
            if main and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            reasons = []
            if cfg.eval_every and self.step % cfg.eval_every == 0:
                reasons.append(f"every {cfg.eval_every} steps")
            if self.step in cfg.eval_steps:
                reasons.append(f"step {self.step}")
            while pending_marks and self.train_seconds >= pending_marks[0]:
                reasons.append(f"{pending_marks.pop(0):g} s of training")
            if main and reasons and self.data.test_views:
                eval_start = time.perf_counter()
                self.evaluate_now(", ".join(reasons))
                eval_seconds += time.perf_counter() - eval_start
        if bar is not None:
            bar.close()
        self.train_seconds = time.perf_counter() - started - eval_seconds
        if not self.dist.enabled:
            return self.finish(self.train_seconds)
        self.dist.barrier(f"end of training at step {self.step}")  # every rank finished the loop
        try:
            if main:
                return self.finish(self.train_seconds)
            return {"rank": self.dist.rank, "steps": self.step, "train_seconds": self.train_seconds}
        finally:
            self.dist.shutdown()

    def progress_postfix(self) -> Dict[str, object]:
        """What the progress bar shows after each step."""
        recent = self.history[-20:]
        return dict(loss=f"{np.mean([h['loss'] for h in recent]):.4f}", psnr=f"{np.mean([h['psnr'] for h in recent]):.2f}", n=len(self.scene))

    def evaluate_now(self, reason: str) -> Dict[str, object]:
        """Evaluate on the test views mid-training; appends to evaluations.json (and the step's history entry)."""
        metrics = evaluate(self.scene, self.data.test_views, self.background, self.config.backend,
                           compose=self.driving.eval_compose if self.driving is not None else None)
        record = {
            "reason": reason,
            "step": self.step,
            "train_seconds": self.train_seconds,
            "num_gaussians": len(self.scene),
            **{k: metrics[k] for k in ("psnr", "ssim", "lpips")},
        }
        self.evaluations.append(record)
        if self.history:
            self.history[-1]["test_psnr"] = metrics["psnr"]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.run_dir / "evaluations.json", self.evaluations)
        print(f"[eval] step {self.step} ({reason}): test PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, "
              f"{len(self.scene)} Gaussians", flush=True)
        if gabor_summary(self.scene):
            print(gabor_summary(self.scene), flush=True)
        return record

    def save_checkpoint(self) -> Path:
        """Write step_NNNNNN.pt and latest.pt with CPU tensors only (a GPU run's checkpoint loads without a GPU)."""
        path = self.run_dir / "checkpoints" / f"step_{self.step:06d}.pt"
        payload = self.checkpoint_payload()
        save_checkpoint(path, payload)
        save_checkpoint(self.run_dir / "checkpoints" / "latest.pt", payload)
        self._last_good_checkpoint = path
        return path

    def checkpoint_payload(self) -> Dict[str, object]:
        """What a checkpoint holds (CPU tensors): scene, optimisers, strategy, random state, history."""
        cpu = torch.device("cpu")
        return {
            "scene": self.scene.state(),
            "step": self.step,
            "optimizers": {k: tensors_to(v.state_dict(), cpu) for k, v in self.optimizers.items()},
            "strategy": tensors_to(self.strategy.state_dict(), cpu),
            **({"rigidity": self.rigidity.state_dict()} if self.rigidity is not None else {}),
            "rng": {"numpy": self._rng.bit_generator.state, "torch": torch.get_rng_state()},
            "history": self.history,
            "evaluations": self.evaluations,
            "train_seconds": self.train_seconds,
            "config": dataclasses.asdict(self.config),
        }

    def save_scene_file(self) -> None:
        """The scene file of the run folder (scene.ply)."""
        self.scene.save_ply(self.run_dir / "scene.ply")

    def finish(self, train_seconds: float) -> Dict[str, object]:
        """Write checkpoint, PLY, test renders, orbit video and metrics.json."""
        cfg = self.config
        self.save_checkpoint()
        self.save_scene_file()
        views = self.data.test_views or self.data.train_views
        metrics = evaluate(self.scene, views, self.background, cfg.backend, self.run_dir / "renders", cfg.num_test_renders,
                           compose=self.driving.eval_compose if self.driving is not None else None)
        if self.driving is not None:
            self.driving.save(self.run_dir)
        metrics.update(
            split="test" if self.data.test_views else "train (no test views)",
            steps=self.step,
            train_seconds=train_seconds,
            steps_per_second=self.step / max(train_seconds, 1e-9),
            dataset=str(self.data.source),
            peak_memory_mb=peak_memory_mb(),
            device=describe_device(self.device),
            evaluations=self.evaluations,
            world_size=self.dist.world_size,
            global_batch=self.global_batch,
            schedule_notes=self.schedule_notes,
        )
        if self.device.type == "cuda":
            metrics["peak_gpu_memory_mb"] = peak_gpu_memory_mb(self.device)
        write_json(self.run_dir / "metrics.json", metrics)
        write_json(self.run_dir / "history.json", self.history)
        if self.history:
            plot_training_curves(self.history, self.run_dir / "training_curves.png")
        if cfg.video:
            with torch.no_grad():
                cameras = orbit_cameras(self.data.train_views and [v.camera for v in self.data.train_views], 60)
                if self.data.time_range is not None:  # a dynamic scene: the orbit also plays through time
                    cameras = with_times(cameras, self.data.time_range)
                frames = (render(self.scene, cam, background=self.background, backend=cfg.backend).rgb for cam in cameras)
                write_video(self.run_dir / "orbit.mp4", frames, fps=24)
        return metrics
