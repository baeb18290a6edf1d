"""`--model nerf`: training on a tiny demo scene, the run folder, resume, NaN guard, sf-eval, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import demo_scene
from scenes import load_checkpoint, load_scene
from scenes.radiance_field import FieldConfig, RadianceField, check_memory
from trainers.config import TrainConfig
from trainers.data import load_dataset
from trainers.field_config import FieldTrainConfig
from trainers.field_trainer import FieldTrainer
from trainers.trainer import Trainer

SMALL = FieldConfig(levels=8, log2_table=14, finest_res=128, hidden=32, grid_res=32, march_steps=128)


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory) -> Path:
    return demo_scene(tmp_path_factory, "gpu-field")


def _config(data: Path, out: Path, name: str, steps: int, **kwargs) -> TrainConfig:
    nerf = FieldTrainConfig(net=SMALL, rays_per_step=512, samples_per_step=1 << 13, occupancy_warmup=32)
    return TrainConfig(data=data, output_dir=out, run_name=name, max_steps=steps, progress=False, video=False,
                       model="nerf", nerf=nerf, num_test_renders=1, **kwargs)


def test_nerf_training_learns_writes_the_run_folder_and_resumes(tiny_demo, tmp_path):
    data = load_dataset(tiny_demo)
    trainer = Trainer(_config(tiny_demo, tmp_path, "nerf", 60, checkpoint_every=30), data)
    assert isinstance(trainer, FieldTrainer)
    metrics = trainer.train()
    history = trainer.history
    assert history[-1]["psnr"] > history[0]["psnr"] + 2.0
    assert all(h["rays_per_second"] > 0 for h in history)
    run = tmp_path / "nerf"
    for name in ("config.json", "metrics.json", "history.json", "training_curves.png", "field.pt", "checkpoints/latest.pt"):
        assert (run / name).is_file(), name
    assert json.loads((run / "metrics.json").read_text())["psnr"] == pytest.approx(metrics["psnr"])
    field = load_scene(run / "field.pt")
    assert isinstance(field, RadianceField)
    # resume from step 30 reproduces the uninterrupted run's parameters at step 60
    resumed = Trainer(_config(tiny_demo, tmp_path, "resumed", 60, resume=run / "checkpoints" / "step_000030.pt"), data)
    assert resumed.step == 30
    resumed.train()
    torch.testing.assert_close(resumed.scene.table, trainer.scene.table)


def test_sf_eval_reads_a_field(tiny_demo, tmp_path):
    from scripts.eval_cli import EvalConfig, run_eval

    data = load_dataset(tiny_demo)
    Trainer(_config(tiny_demo, tmp_path, "ev", 5), data).train()
    metrics = run_eval(EvalConfig(scene=tmp_path / "ev" / "field.pt", data=tiny_demo, output=tmp_path / "eval.json"))
    assert metrics["psnr"] > 5 and metrics["num_gaussians"] == 0


def test_checkpoints_of_the_other_model_type_are_refused(tiny_demo, tmp_path):
    data = load_dataset(tiny_demo)
    Trainer(_config(tiny_demo, tmp_path, "f", 2), data).train()
    gauss = TrainConfig(data=tiny_demo, output_dir=tmp_path, run_name="g", max_steps=2, progress=False, video=False)
    Trainer(gauss, data).train()
    with pytest.raises(ValueError, match="resume it with --model nerf"):
        Trainer(TrainConfig(data=tiny_demo, output_dir=tmp_path, resume=tmp_path / "f" / "checkpoints" / "latest.pt"), data)
    with pytest.raises(ValueError, match="holds a 'gaussian' scene"):
        Trainer(_config(tiny_demo, tmp_path, "x", 2, resume=tmp_path / "g" / "checkpoints" / "latest.pt"), data)
    with pytest.raises(ValueError, match="not a radiance field"):
        RadianceField.from_state(load_checkpoint(tmp_path / "g" / "checkpoints" / "latest.pt")["scene"])


def test_nan_guard_names_the_parameter(tiny_demo, tmp_path):
    data = load_dataset(tiny_demo)
    trainer = Trainer(_config(tiny_demo, tmp_path, "nan", 3), data)
    with torch.no_grad():
        trainer.scene.color_mlp[0].weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="color_mlp|loss became"):
        trainer.train()


def test_memory_check_says_how_much_is_needed(monkeypatch):
    import scenes.radiance_field as rf

    monkeypatch.setattr(rf, "_available_memory", lambda: 2**30)
    with pytest.raises(MemoryError, match=r"needs \d+\.\d+ GiB .* only 1.00 GiB"):
        check_memory(FieldConfig(log2_table=26))
    check_memory(SMALL)


def test_sf_distill_turns_the_field_into_gaussians(tiny_demo, tmp_path):
    from scripts.distill import DistillConfig, run_distill

    data = load_dataset(tiny_demo)
    Trainer(_config(tiny_demo, tmp_path, "teacher", 40), data).train()
    train = TrainConfig(progress=False, video=False, num_test_renders=0)
    report = run_distill(DistillConfig(field=tmp_path / "teacher" / "field.pt", data=tiny_demo, output_dir=tmp_path,
                                       run_name="student", points=2000, max_steps=30, min_opacity=0.1, train=train))
    for key in ("field_psnr", "splats_psnr", "psnr_kept", "distill_seconds", "num_gaussians"):
        assert key in report
    assert (tmp_path / "student" / "scene.ply").is_file() and (tmp_path / "student" / "distill.json").is_file()
    assert report["splats_psnr"] > 8
    with pytest.raises(ValueError, match="not a radiance field"):
        run_distill(DistillConfig(field=tmp_path / "student" / "scene.ply", data=tiny_demo, output_dir=tmp_path))


def test_bad_field_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="--nerf.net.log2-table"):
        FieldConfig(log2_table=40)
    with pytest.raises(ValueError, match="--nerf.rays-per-step"):
        FieldTrainConfig(rays_per_step=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU training needs CUDA")
def test_nerf_trains_on_the_gpu(tiny_demo, tmp_path):
    data = load_dataset(tiny_demo)
    trainer = Trainer(_config(tiny_demo, tmp_path, "gpu", 20, device="cuda"), data)
    trainer.train()
    assert trainer.scene.table.is_cuda and trainer.history[-1]["psnr"] > trainer.history[0]["psnr"]
    cpu = load_scene(tmp_path / "gpu" / "field.pt")
    assert not cpu.table.is_cuda
