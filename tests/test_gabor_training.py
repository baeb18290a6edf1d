"""Training with --model gabor on a tiny demo scene: terms get switched on, the outputs hold a Gabor scene, resume
restores the schedule, and a checkpoint of another model is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scenes import GaborScene, load_scene
from trainers.config import TrainConfig
from trainers.data import DemoSceneConfig, generate_demo_scene, load_dataset
from trainers.gabor_schedule import GaborTraining, GaborTrainingConfig
from trainers.strategies import MCMCStrategy
from trainers.trainer import Trainer


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory) -> Path:
    config = DemoSceneConfig(output=tmp_path_factory.mktemp("demo") / "scene", width=48, height=36, num_views=12, num_points=400)
    return generate_demo_scene(config)


def gabor_config(tiny_demo, tmp_path, name, steps=40, resume=None, model="gabor", **kw) -> TrainConfig:
    schedule = GaborTrainingConfig(refine_start=10, refine_every=10, refine_stop=1000, activate_fraction=0.3)
    return TrainConfig(data=tiny_demo, output_dir=tmp_path, run_name=name, max_steps=steps, progress=False,
                       video=False, model=model, gabor=schedule, checkpoint_every=20, resume=resume,
                       strategy=MCMCStrategy(cap_max=500, refine_start=10, refine_every=10), **kw)


def test_gabor_training_switches_terms_on_and_writes_a_gabor_scene(tiny_demo, tmp_path):
    data = load_dataset(tiny_demo)
    trainer = Trainer(gabor_config(tiny_demo, tmp_path, "gabor"), data)
    assert isinstance(trainer.scene, GaborScene) and isinstance(trainer.strategy, GaborTraining)
    assert trainer.scene.num_active_terms() == 0
    metrics = trainer.train()
    scene = trainer.scene
    assert scene.num_active_terms() > 0, "no Gabor term was switched on"
    assert metrics["gabor_active_terms"] == scene.num_active_terms() and metrics["gabor_num_terms"] == 4
    assert any(h.get("gabor_switched_on", 0) > 0 for h in trainer.history)
    assert trainer.history[-1]["gabor_active_terms"] == scene.num_active_terms()
    assert len(scene) > 400  # MCMC grew the scene, with the terms in every row
    assert scene.params["gabor_nu"].shape == (len(scene), 4, 3)
    # inactive weights never moved (the probe is a measurement), active ones did
    active = scene.params["gabor_active"] == 1
    assert torch.equal(scene.params["gabor_raw_weights"][~active], torch.zeros(int((~active).sum())))
    assert (scene.params["gabor_raw_weights"][active] != 0).any()
    assert (scene.gabor_weights.abs().sum(-1) < 1).all()
    run = tmp_path / "gabor"
    saved = load_scene(run / "scene.ply")
    assert isinstance(saved, GaborScene)
    for name, value in scene.params.items():
        assert torch.equal(saved.params[name], value.detach().cpu()), name
    assert json.loads((run / "metrics.json").read_text())["gabor_active_terms"] == scene.num_active_terms()
    assert (run / "training_curves.png").stat().st_size > 1000


def test_gabor_resume_matches_and_other_models_are_refused(tiny_demo, tmp_path):
    data = load_dataset(tiny_demo)
    full = Trainer(gabor_config(tiny_demo, tmp_path, "full", steps=30), data)
    full.train()
    checkpoint = tmp_path / "full" / "checkpoints" / "step_000020.pt"
    resumed = Trainer(gabor_config(tiny_demo, tmp_path, "resumed", steps=30, resume=checkpoint), data)
    assert resumed.step == 20 and isinstance(resumed.strategy, GaborTraining)
    resumed.train()
    for name, value in full.scene.params.items():
        assert torch.equal(resumed.scene.params[name], value), name
    with pytest.raises(ValueError, match=r"step_000020.pt: the checkpoint holds a 'gabor' scene but --model gaussian"):
        Trainer(gabor_config(tiny_demo, tmp_path, "wrong", steps=30, resume=checkpoint, model="gaussian"), data)
    plain = Trainer(TrainConfig(data=tiny_demo, output_dir=tmp_path, run_name="plain", max_steps=2, progress=False,
                                video=False, model="gaussian"), data)
    plain.train()
    with pytest.raises(ValueError, match=r"holds a 'gaussian' scene but --model gabor was asked for"):
        Trainer(gabor_config(tiny_demo, tmp_path, "wrong2", resume=tmp_path / "plain" / "checkpoints" / "latest.pt"), data)


def test_nan_in_gabor_terms_is_caught(tiny_demo, tmp_path):
    data = load_dataset(tiny_demo)
    trainer = Trainer(gabor_config(tiny_demo, tmp_path, "nan", steps=5), data)
    with torch.no_grad():
        trainer.scene.params["gabor_phases"][3, 1] = float("nan")
    with pytest.raises((FloatingPointError, ValueError), match="gabor_phases|NaN|nan"):
        trainer.train_step()


def test_bad_gabor_options_are_refused():
    with pytest.raises(ValueError, match="--gabor.num-terms must be in 1..8"):
        GaborTrainingConfig(num_terms=9)
    with pytest.raises(ValueError, match="--gabor.weight-l1 must be >= 0"):
        GaborTrainingConfig(weight_l1=-1)
    with pytest.raises(ValueError, match="--gabor.nu-end"):
        GaborTrainingConfig(nu_start=2.0, nu_end=1.0)


def test_batch_scaling_scales_the_gabor_schedule():
    from trainers.distributed import scale_schedule

    config, notes = scale_schedule(TrainConfig(model="gabor"), 4)
    assert (config.gabor.refine_start, config.gabor.refine_every, config.gabor.refine_stop) == (125, 25, 3750)
    assert "gabor.refine_every 100 -> 25" in notes
    assert scale_schedule(TrainConfig(model="gaussian"), 4)[0].gabor.refine_start == 500
