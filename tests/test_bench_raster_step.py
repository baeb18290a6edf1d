"""scripts/bench_raster_step: captures a real training step's rasterizer inputs and times them, saved or live."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.bench_raster_step import RasterStepConfig, main

FERN = Path(__file__).resolve().parents[2] / "shared" / "data" / "llff_fern"


@pytest.mark.skipif(not FERN.exists(), reason="needs ../shared/data/llff_fern")
def test_saved_step_times_to_the_same_gradients(tmp_path):
    saved = tmp_path / "fern_step.pt"
    live = main(RasterStepConfig(workload="fern", data_root=FERN.parent, warmup_steps=1, repeats=1, save=saved))
    assert saved.exists() and not saved.with_name(saved.name + ".tmp").exists()
    again = main(RasterStepConfig(load=saved, repeats=1))
    assert live["forward_ms"] > 0 and live["backward_ms"] > 0
    assert live["gradient_abs_sum"] > 0
    assert again["gradient_abs_sum"] == live["gradient_abs_sum"]  # the backward is deterministic


def test_code_root_needs_a_saved_step(tmp_path):
    with pytest.raises(SystemExit, match="--code-root needs --load"):
        main(RasterStepConfig(code_root=tmp_path))
