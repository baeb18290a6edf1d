"""sf-train --viewer: the training loop shares its scene with the viewer, pauses, and yields to camera moves."""

from __future__ import annotations

import threading
import time

import pytest

from trainers.config import TrainConfig
from trainers.data import DemoSceneConfig, generate_demo_scene, load_dataset
from trainers.strategies import FixedStrategy
from trainers.trainer import Trainer


def _wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    config = DemoSceneConfig(output=tmp_path_factory.mktemp("live") / "scene", width=48, height=32, num_views=8, num_points=300)
    return generate_demo_scene(config)


def test_pause_resume_and_yield(tiny_demo, tmp_path):
    from scripts.train import attach_viewer

    config = TrainConfig(
        data=tiny_demo, output_dir=tmp_path, run_name="live", max_steps=10_000, progress=False, video=False,
        strategy=FixedStrategy(), viewer=True, viewer_port=0,
    )
    trainer = Trainer(config, load_dataset(tiny_demo))
    server = attach_viewer(trainer)
    control = server.control
    stop = threading.Event()

    def loop():
        while not stop.is_set() and trainer.step < config.max_steps:
            for hook in trainer.before_step:
                hook(trainer)
            with trainer.step_guard():
                stats = trainer.train_step()
            for callback in trainer.callbacks:
                callback(trainer, trainer.step, stats)

    worker = threading.Thread(target=loop, daemon=True)
    try:
        assert server.scene is trainer.scene
        worker.start()
        assert _wait_until(lambda: trainer.step >= 3, timeout=180.0)  # the first step may compile the CPU backend
        control.set_paused(True)
        time.sleep(0.3)  # let an in-flight step finish
        paused_at = trainer.step
        assert not _wait_until(lambda: trainer.step > paused_at + 1, timeout=1.0), "training advanced while paused"
        control.set_paused(False)
        assert _wait_until(lambda: trainer.step > paused_at + 2)
        before = control.yield_count

        def dragging() -> bool:  # a drag sends camera updates continuously (~30 Hz), not once
            control.mark_interaction()
            return control.yield_count > before

        assert _wait_until(dragging, timeout=5.0), "training did not yield to a camera move"
        # The viewer's lock is what guards each step: holding it stops training.
        with server.scene_lock:
            held_at = trainer.step
            time.sleep(0.3)
            assert trainer.step == held_at
    finally:
        stop.set()
        control.stop()
        worker.join(timeout=10)
        server.stop()
    assert not worker.is_alive()
