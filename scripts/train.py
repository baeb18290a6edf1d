"""sf-train: train a Gaussian scene on a dataset folder and write a run folder."""

from __future__ import annotations

import json

import tyro

from trainers.config import TrainConfig
from trainers.data import load_dataset
from trainers.trainer import Trainer

from ._cli import run_cli


def train(config: TrainConfig) -> Trainer:
    data = load_dataset(config.data, downscale=config.downscale, background=config.background)
    for note in data.notes:
        print(f"[data] {note}")
    print(f"[data] {len(data.train_views)} train / {len(data.test_views)} test views from {data.source}")
    trainer = Trainer(config, data)
    print(f"[train] {len(trainer.scene)} Gaussians, run folder {trainer.run_dir}")
    metrics = trainer.train()
    print(
        f"[eval] {metrics['split']}: PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, "
        f"{metrics['steps']} steps in {metrics['train_seconds']:.1f} s ({metrics['steps_per_second']:.1f} steps/s)"
    )
    print(json.dumps({"run_dir": str(trainer.run_dir)}))
    return trainer


def entrypoint() -> None:
    config = tyro.cli(TrainConfig)
    run_cli(lambda: train(config))


if __name__ == "__main__":
    entrypoint()
