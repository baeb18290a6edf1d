"""A short LiDAR-camera training run on the synthetic street beats camera-only on depth (and on held-out PSNR),
and sf-eval reports depth against LiDAR on the held-out frames."""

from __future__ import annotations

import copy
import json

import pytest

from _driving_fixtures import tiny_street
from scripts.eval_cli import EvalConfig, run_eval
from trainers.config import TrainConfig
from trainers.data import load_dataset
from trainers.driving_losses import DrivingConfig
from trainers.strategies import DefaultStrategy
from trainers.trainer import Trainer


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tiny_street() / "canonical"
    data = load_dataset(folder, voxel=0.2, poisson_depth=8)  # fewer seed points: a fast test
    out = tmp_path_factory.mktemp("driving_runs")
    metrics = {}
    for name, driving in (("lidar", DrivingConfig()), ("camera", DrivingConfig(use_lidar=False))):
        cfg = TrainConfig(data=folder, run_name=name, output_dir=out, max_steps=200, sh_degree=0, video=False,
                          progress=False, num_test_renders=1, driving=driving,
                          strategy=DefaultStrategy(refine_stop=150, max_gaussians=40_000))
        metrics[name] = Trainer(cfg, copy.deepcopy(data)).train()
    return folder, out, metrics


def test_lidar_camera_beats_camera_only_on_depth(runs):
    _, _, metrics = runs
    lidar, camera = metrics["lidar"], metrics["camera"]
    assert lidar["depth_abs_rel"] < 0.1, lidar["depth_abs_rel"]
    assert lidar["depth_abs_rel"] < 0.5 * camera["depth_abs_rel"]
    assert lidar["depth_delta1"] > camera["depth_delta1"]
    assert lidar["psnr"] > camera["psnr"]


def test_sf_eval_reports_depth_and_uses_the_sky(runs):
    folder, out, metrics = runs
    assert (out / "lidar" / "sky.pt").is_file()
    result = run_eval(EvalConfig(scene=out / "lidar" / "scene.ply", data=folder, output=out / "eval.json"))
    saved = json.loads((out / "eval.json").read_text())
    for key in ("depth_abs_rel", "depth_rmse", "depth_delta1"):
        assert saved[key] is not None
    assert result["num_views"] == 2 and result["held_out"].startswith("every 10th frame")
    assert abs(result["psnr"] - metrics["lidar"]["psnr"]) < 0.05  # the sky is composited as in training
    assert abs(result["depth_abs_rel"] - metrics["lidar"]["depth_abs_rel"]) < 1e-3
