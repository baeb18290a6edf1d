"""Data-parallel training: 2 gloo processes on 127.0.0.1 train exactly like 1 process with 2 views per step."""

from __future__ import annotations

import multiprocessing
import socket
import time
from pathlib import Path

import pytest
import torch

from _dist_worker import tiny_config, train_rank
from scenes import load_scene
from trainers.config import TrainConfig
from trainers.data import DemoSceneConfig, generate_demo_scene, load_dataset
from trainers.distributed import config_hash, scale_schedule
from trainers.strategies import MCMCStrategy
from trainers.trainer import Trainer


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory) -> Path:
    config = DemoSceneConfig(output=tmp_path_factory.mktemp("demo") / "scene", width=48, height=36, num_views=12, num_points=600)
    return generate_demo_scene(config)


@pytest.fixture(autouse=True)
def single_threaded_children(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # 2 ranks on a 2-core machine
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(data: Path, out: Path, per_rank_overrides, faults=(None, None), timeout: float = 240.0, wait_for=None):
    """Start one spawned process per rank; returns their exit codes and the seconds until all ended (or until the
    ranks in `wait_for` ended; the others are then killed)."""
    out.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    world = len(per_rank_overrides)
    procs = [
        ctx.Process(target=train_rank, args=(r, world, port, str(data), str(out), per_rank_overrides[r], faults[r]))
        for r in range(world)
    ]
    start = time.perf_counter()
    for p in procs:
        p.start()
    waited = [procs[r] for r in wait_for] if wait_for is not None else procs
    for p in waited:
        p.join(timeout)
    elapsed = time.perf_counter() - start
    for p in procs:
        if p not in waited and p.is_alive():
            p.kill()
            p.join()
    for p in procs:
        if p.is_alive():
            p.kill()
            pytest.fail(f"rank process {p.pid} still running after {timeout} s (a hang)")
    return [p.exitcode for p in procs], elapsed


def test_schedule_scales_with_the_global_batch():
    config = TrainConfig(max_steps=3000, sh_degree_interval=1000)
    scaled, notes = scale_schedule(config, 4)
    assert scaled.max_steps == 750 and scaled.sh_degree_interval == 250
    assert scaled.strategy.refine_every == 25 and scaled.strategy.refine_start == 125
    assert scaled.lr.means == pytest.approx(config.lr.means * 2) and scaled.lr.means_final_ratio == config.lr.means_final_ratio
    assert any("max_steps 3000 -> 750" in n for n in notes)
    assert scale_schedule(config, 1) == (config, [])
    assert scale_schedule(TrainConfig(coarse_to_fine=(500, 1500)), 2)[0].coarse_to_fine == (250, 750)
    # The hash ignores rank-local fields and sees training ones.
    assert config_hash(config) == config_hash(TrainConfig(max_steps=3000, sh_degree_interval=1000, device="cuda:1"))
    assert config_hash(config) != config_hash(TrainConfig(max_steps=3001, sh_degree_interval=1000))


STRATEGIES = {
    "default": {},
    "mcmc": {"strategy": MCMCStrategy(refine_start=4, refine_every=4, cap_max=700)},
}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_two_processes_match_one_process_with_two_views(tiny_demo, tmp_path, strategy):
    overrides = STRATEGIES[strategy]
    # One process, 2 views per step (in this test process).
    single = Trainer(tiny_config(tiny_demo, tmp_path / "single", "one", batch_size=2, **overrides), load_dataset(tiny_demo))
    initial = len(single.scene)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: the CPU kernels' per-thread partial sums depend on the thread count
    try:
        single.train()
    finally:
        torch.set_num_threads(threads)
    assert single.config.max_steps == 12 and single.config.strategy.refine_every == 2  # schedules / global batch 2
    grew = [h for h in single.history if h.get("cloned", 0) + h.get("split", 0) + h.get("added", 0) > 0]
    assert grew and len(single.scene) != initial, "densification must act in this run for the test to mean anything"

    # Two gloo processes, 1 view each.
    codes, _ = run_ranks(tiny_demo, tmp_path / "dist", [overrides, overrides])
    errors = {p.name: p.read_text() for p in (tmp_path / "dist").glob("*.err")}
    assert codes == [0, 0], errors
    states = [torch.load(tmp_path / "dist" / f"rank{r}.pt")["scene"]["params"] for r in range(2)]
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]), f"ranks disagree on {name}"
    expected = single.scene.state()["params"]
    assert states[0]["means"].shape == expected["means"].shape, "densification differed"
    for name, value in expected.items():
        # Bitwise equal on this machine (per-view backward keeps the same sums); allow round-off elsewhere.
        assert torch.allclose(states[0][name], value, atol=1e-6, rtol=1e-5), (name, (states[0][name] - value).abs().max())
    # Only rank 0 wrote the run folder, and it is complete.
    run = tmp_path / "dist" / "dist"
    assert (run / "metrics.json").is_file() and len(load_scene(run / "scene.ply")) == len(single.scene)
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == ["dist", "rank0.pt", "rank1.pt"]


def test_distributed_resume_continues_the_same_run(tiny_demo, tmp_path):
    """2 ranks checkpoint at step 6 of 12; 2 new ranks resume from it and end where an unbroken run ends."""
    codes, _ = run_ranks(tiny_demo, tmp_path / "a", [{"checkpoint_every": 6}] * 2)
    assert codes == [0, 0], [p.read_text() for p in (tmp_path / "a").glob("*.err")]
    checkpoint = tmp_path / "a" / "dist" / "checkpoints" / "step_000006.pt"
    codes, _ = run_ranks(tiny_demo, tmp_path / "b", [{"checkpoint_every": 6, "resume": checkpoint}] * 2)
    assert codes == [0, 0], [p.read_text() for p in (tmp_path / "b").glob("*.err")]
    full = torch.load(tmp_path / "a" / "rank0.pt")
    resumed = torch.load(tmp_path / "b" / "rank0.pt")
    assert resumed["step"] == full["step"] == 12
    for name, value in full["scene"]["params"].items():
        assert torch.allclose(resumed["scene"]["params"][name], value, atol=1e-6), name


def test_a_rank_that_dies_stops_the_other_with_a_clear_error(tiny_demo, tmp_path):
    timeout_s = 20.0
    codes, elapsed = run_ranks(tiny_demo, tmp_path, [{"dist_timeout_s": timeout_s}] * 2, faults=(None, ("exit", 2)))
    assert codes[1] == 3  # the crash we injected
    assert codes[0] == 1
    message = (tmp_path / "rank0.err").read_text()
    assert "DistributedError" in message and "rank 0 of 2" in message and "another rank" in message, message
    assert elapsed < timeout_s + 60, f"rank 0 took {elapsed:.0f} s to notice"


def test_a_rank_that_hangs_stops_the_other_after_the_timeout(tiny_demo, tmp_path):
    timeout_s = 8.0
    codes, elapsed = run_ranks(tiny_demo, tmp_path, [{"dist_timeout_s": timeout_s}] * 2, faults=(None, ("hang", 2)), wait_for=[0])
    assert codes[0] == 1
    message = (tmp_path / "rank0.err").read_text()
    assert "DistributedError" in message and "timeout 8 s" in message, message
    print(f"rank 0 gave up after {elapsed:.1f} s (start-up included): {message}")
    assert elapsed < timeout_s + 60, f"rank 0 took {elapsed:.0f} s to give up"


def test_ranks_with_different_configs_refuse_to_start(tiny_demo, tmp_path):
    codes, _ = run_ranks(tiny_demo, tmp_path, [{}, {"seed": 1}])
    assert codes == [1, 1]
    for r in range(2):
        message = (tmp_path / f"rank{r}.err").read_text()
        assert "different training configs" in message and "same arguments" in message, message


def test_distributed_flag_without_torchrun_says_how_to_start():
    from trainers.distributed import init_distributed

    with pytest.raises(ValueError, match=r"torchrun --nproc-per-node N -m scripts.train --distributed"):
        init_distributed(True, "cpu", 10.0)
    assert not init_distributed(False, "cpu", 10.0).enabled  # plain sf-train: no process group


def test_torchrun_command_from_the_readme(tiny_demo, tmp_path):
    """The documented launch: torchrun -m scripts.train --distributed; rank 0 logs the batch scaling and writes metrics."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
        "--master-port", str(free_port()), "-m", "scripts.train", "--distributed", "--data", str(tiny_demo),
        "--output-dir", str(tmp_path), "--run-name", "tr", "--max-steps", "8", "--no-video", "--no-progress",
        "--num-test-renders", "1", "--backend", "cpu", "--device", "cpu", "strategy:fixed",
    ]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[dist] 2 processes x 1 view(s) per step" in result.stdout
    assert "[batch] max_steps 8 -> 4" in result.stdout
    assert result.stdout.count("[eval]") == 1  # rank 0 only
    metrics = json.loads((tmp_path / "tr" / "metrics.json").read_text())
    assert (metrics["world_size"], metrics["global_batch"], metrics["steps"]) == (2, 2, 4)


def test_cli_reports_a_failed_collective_in_one_line_and_exits_1():
    """sf-train's error path for a dead peer: the message, exit status 1, and no teardown that could abort."""
    import subprocess
    import sys

    code = (
        "from scripts._cli import run_cli\n"
        "from trainers.distributed import DistributedError\n"
        "def main():\n"
        "    raise DistributedError('rank 0 of 2: gradient all-reduce at step 3 failed; another rank probably exited')\n"
        "run_cli(main)\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: rank 0 of 2: gradient all-reduce at step 3 failed; another rank probably exited"
    ]
