"""`sf-train --model nerf`: trains a RadianceField on random rays from every training view.

`Trainer(config, data)` with config.model == "nerf" builds this class; it reuses Trainer's loop (`train()`:
max_steps / max_seconds, evaluations, checkpoints, progress, finish) and replaces the step, checkpoint contents and
NaN guard. One process, one device (no torchrun data parallelism for fields).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from render.field_render import camera_rays
from render.paths import focus_point
from scenes import load_checkpoint, save_checkpoint
from scenes.radiance_field import RadianceField, check_memory
from cuda_rasterizer import field_ops

from .config import TrainConfig
from .data.dataset import SceneData
from .device import optimizer_state_to_params, resolve_device, tensors_to
from .distributed import init_distributed
from .evaluation import evaluate
from .losses import psnr_from_mse
from .trainer import Trainer, write_json


def field_space(data: SceneData, space: str, box_extent: float):
    """(mode, params) of the field's space from the training cameras: a cube around their focus point, or the
    contraction centred there with the cameras inside the unit ball."""
    cameras = [v.camera for v in data.train_views]
    centers = data.camera_centers()
    center = focus_point(cameras) if len(cameras) > 1 else centers[0]
    dist = np.linalg.norm(centers - center, axis=1)
    if space == "auto":
        space = "box" if data.train_views[0].alpha is not None else "contract"
    if space == "box":
        half = max(box_extent * float(dist.mean()), 1e-3)
        return field_ops.MODE_BOX, [*(center - half), *(center + half)]
    return field_ops.MODE_CONTRACT, [*center, max(float(dist.max()), 1e-3), 0.0, 0.0]


class RayBank:
    """Every training pixel (colour, alpha) with its view, for drawing random ray batches."""

    def __init__(self, data: SceneData, device: torch.device):
        views = data.train_views
        self.cameras = [v.camera for v in views]
        sizes = [v.camera.width * v.camera.height for v in views]
        self.starts = torch.tensor(np.concatenate([[0], np.cumsum(sizes)]), dtype=torch.long)
        self.rgb = torch.cat([v.image.reshape(-1, 3) for v in views]).to(device)
        with_alpha = all(v.alpha is not None for v in views)
        self.alpha = torch.cat([v.alpha.reshape(-1) for v in views]).to(device) if with_alpha else None
        masks = [v.mask for v in views]
        self.mask = torch.cat([m.reshape(-1) for m in masks]).to(device) if all(m is not None for m in masks) else None
        self.device = device

    def __len__(self) -> int:
        return int(self.starts[-1])

    def rays(self, index: torch.Tensor):
        """(origins, dirs, zscale, colours, alpha or None, mask or None) of flat pixel indices."""
        view = torch.searchsorted(self.starts, index, right=True) - 1
        origins, dirs, zs = [], [], []
        order = torch.argsort(view)
        index, view = index[order], view[order]
        for v in torch.unique_consecutive(view).tolist():
            sel = view == v
            o, d, z = camera_rays(self.cameras[v], index[sel] - self.starts[v], self.device)
            origins.append(o), dirs.append(d), zs.append(z)
        index = index.to(self.device)
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return torch.cat(origins), torch.cat(dirs), torch.cat(zs), self.rgb[index], pick(self.alpha), pick(self.mask)


class FieldTrainer(Trainer):
    """Trainer for `--model nerf` (built by Trainer.__new__)."""

    def __init__(self, config: TrainConfig, data: SceneData, scene: Optional[RadianceField] = None):
        if config.distributed or config.batch_size != 1:
            raise ValueError("--model nerf trains in one process: drop --distributed / --batch-size (rays per step "
                             "are set by --nerf.rays-per-step and --nerf.samples-per-step)")
        self.dist = init_distributed(False, config.device, config.dist_timeout_s)
        self.config, self.data = config, data
        self.fc = config.nerf
        self.global_batch, self.schedule_notes, self.config_hash = 1, [], ""
        self.device = resolve_device(config.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        torch.manual_seed(config.seed)
        self.model, self.model_reason = "nerf", "asked for"
        if scene is None:
            check_memory(self.fc.net)
            mode, params = field_space(data, self.fc.space, self.fc.box_extent)
            scene = RadianceField(self.fc.net, mode, params, seed=config.seed)
        self.scene = scene.to(self.device)
        background = config.background if config.background is not None else data.background
        self.background = torch.tensor(background, dtype=torch.float32, device=self.device)
        self.bank = RayBank(data, self.device)
        self.optimizers = self._make_optimizers()
        self.step, self.train_seconds = 0, 0.0
        self.history: List[Dict[str, float]] = []
        self.evaluations: List[Dict[str, object]] = []
        self.callbacks, self.before_step = [], []
        self.step_guard = contextlib.nullcontext
        self._rng = np.random.default_rng(config.seed)
        self._gen = torch.Generator().manual_seed(config.seed)
        self._last_good_checkpoint: Optional[Path] = None
        self.rays_per_step = self.fc.rays_per_step
        self._rays_per_second = 0.0
        self.run_dir = Path(config.output_dir) / (config.run_name or datetime.now().strftime("%Y-%m-%d_%H%M%S"))
        if config.resume is not None:
            self.resume(config.resume)

    def _make_optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        mlp = [p for n, p in self.scene.named_parameters() if n != "table"]
        groups = [{"params": [self.scene.table], "weight_decay": 0.0}, {"params": mlp, "weight_decay": self.fc.weight_decay}]
        fused = self.device.type == "cpu" or self.device.type == "cuda"
        return {"field": torch.optim.Adam(groups, lr=self.fc.lr, betas=(0.9, 0.99), eps=1e-15, fused=fused)}

    def resume(self, path: Path) -> None:
        payload = load_checkpoint(path)
        kind = payload["scene"].get("kind", "gaussian")
        if kind != RadianceField.KIND:
            raise ValueError(f"{path}: checkpoint holds a {kind!r} scene; --model nerf resumes only radiance-field "
                             f"checkpoints (resume it without --model nerf)")
        for key in ("optimizers", "step", "rng"):
            if key not in payload:
                raise ValueError(f"{path}: checkpoint has no {key!r} entry, so training cannot resume from it")
        self.scene = RadianceField.from_state(payload["scene"]).to(self.device)
        self.optimizers = self._make_optimizers()
        self.optimizers["field"].load_state_dict(payload["optimizers"]["field"])
        optimizer_state_to_params(self.optimizers["field"])
        self.step = int(payload["step"])
        self.train_seconds = float(payload.get("train_seconds", 0.0))
        self.evaluations = list(payload.get("evaluations", []))
        self.history = list(payload.get("history", []))
        self._rng.bit_generator.state = payload["rng"]["numpy"]
        torch.set_rng_state(payload["rng"]["torch"])
        self._gen.set_state(payload["rng"]["generator"])
        self.rays_per_step = int(payload.get("rays_per_step", self.rays_per_step))

    def train_step(self) -> Dict[str, float]:
        fc, cfg = self.fc, self.config
        started = time.perf_counter()
        lr = fc.lr * fc.lr_final_ratio ** (self.step / max(cfg.max_steps, 1))
        for group in self.optimizers["field"].param_groups:
            group["lr"] = lr
        if self.step % fc.occupancy_every == 0:
            fraction = 1.0 if self.step < fc.occupancy_warmup else 0.25
            self.scene.update_occupancy(fraction, generator=self._gen)
        n = self.rays_per_step
        index = torch.randint(len(self.bank), (n,), generator=self._gen)
        origins, dirs, zscale, target, alpha, mask = self.bank.rays(index)
        bg = self.background.expand(n, 3)
        if alpha is not None and fc.random_background:
            bg = torch.rand(n, 3, generator=self._gen).to(self.device)
            target = target + (1 - alpha)[:, None] * (bg - self.background)
        near = torch.full((n,), cfg_near(self.bank), device=self.device) * zscale
        far = torch.full((n,), 1e6, device=self.device)
        jitter = torch.rand(n, generator=self._gen).to(self.device)
        out = self.scene.render_rays(origins, dirs, near, far, jitter=jitter)
        rgb = out["rgb"] + (1 - out["opacity"])[:, None] * bg
        err = (rgb - target) ** 2
        if mask is not None:
            err = err * mask[:, None]
        loss = err.mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {self.step}")
        opt = self.optimizers["field"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.step += 1
        self._check_parameters()
        samples = max(out["samples"], 1)
        self.rays_per_step = int(np.clip(n * fc.samples_per_step / samples, 256, fc.max_rays_per_step))
        seconds = time.perf_counter() - started
        self._rays_per_second = n / max(seconds, 1e-9)
        mse = float(((rgb.detach().clamp(0, 1) - target) ** 2).mean())
        return {"loss": float(loss.detach()), "psnr": psnr_from_mse(mse), "rays": float(n), "samples": float(samples),
                "rays_per_second": self._rays_per_second, "lr": lr}

    def progress_postfix(self) -> Dict[str, str]:
        recent = self.history[-20:]
        return {"loss": f"{np.mean([h['loss'] for h in recent]):.4f}", "psnr": f"{np.mean([h['psnr'] for h in recent]):.2f}",
                "rays/s": f"{np.mean([h['rays_per_second'] for h in recent]):.0f}"}

    def _check_parameters(self) -> None:
        for name, param in self.scene.named_parameters():
            if not bool(torch.isfinite(param.detach().sum())) and not torch.isfinite(param).all():
                kept = f"; the last good checkpoint is {self._last_good_checkpoint}" if self._last_good_checkpoint else ""
                raise FloatingPointError(f"parameter {name!r} became NaN or Inf at step {self.step}{kept}")

    def evaluate_now(self, reason: str) -> Dict[str, object]:
        metrics = evaluate(self.scene, self.data.test_views, self.background, self.config.backend)
        record = {"reason": reason, "step": self.step, "train_seconds": self.train_seconds,
                  **{k: metrics[k] for k in ("psnr", "ssim", "lpips")}}
        self.evaluations.append(record)
        if self.history:
            self.history[-1]["test_psnr"] = metrics["psnr"]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.run_dir / "evaluations.json", self.evaluations)
        print(f"[eval] step {self.step} ({reason}): test PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}", flush=True)
        return record

    def checkpoint_payload(self) -> Dict[str, object]:
        """The field's checkpoint: no strategy; the ray sampler's generator and rays-per-step instead."""
        return {
            "scene": self.scene.state(),
            "step": self.step,
            "optimizers": {"field": tensors_to(self.optimizers["field"].state_dict(), torch.device("cpu"))},
            "rng": {"numpy": self._rng.bit_generator.state, "torch": torch.get_rng_state(), "generator": self._gen.get_state()},
            "rays_per_step": self.rays_per_step,
            "history": self.history,
            "evaluations": self.evaluations,
            "train_seconds": self.train_seconds,
            "config": dataclasses.asdict(self.config),
        }

    def save_scene_file(self) -> None:
        """field.pt: the field alone (what sf-render / sf-eval / sf-view / sf-distill open)."""
        save_checkpoint(self.run_dir / "field.pt", {"scene": self.scene.state()})


def cfg_near(bank: RayBank) -> float:
    return float(min(c.near for c in bank.cameras))
