"""Training throughput: 1 process vs N torchrun processes (gloo) on this machine, with a host-speed probe.

    python -m scripts.bench_distributed [--data DATASET] [--steps 120] [--procs 2]

Runs sf-train on the same data (fixed primitive count, no video): 1 process x 1 view per step with 1 thread and with
all cores, 1 process x N views per step (--batch-size N, 1 thread), and N processes x 1 view (torchrun
--nproc-per-node N, cores / N threads each). Batched runs take steps / N steps, so every run sees the same views. Prints a Markdown table of steps/s and views/s,
the load average before and after (the machine may be shared) and a matmul probe of this host's speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch
import tyro


@dataclass
class BenchDistributedConfig:
    data: Optional[Path] = None
    """Dataset folder (default: generate a demo scene of width x height, 24 views, init_points points)."""
    steps: int = 120
    """Steps of the 1-view run; batched runs do steps / N (the same number of views)."""
    procs: int = 2
    init_points: int = 3000
    width: int = 96
    height: int = 72
    allreduce_gaussians: int = 1_000_000
    """Also time a gloo all-reduce of this many Gaussians' gradients (59 float32 each, SH degree 3); 0 skips it."""


def host_probe() -> Dict[str, float]:
    """Single-thread float32 matmul GFLOP/s (best of 5) and the 1-minute load average."""
    torch.set_num_threads(1)
    a, b = torch.randn(384, 384), torch.randn(384, 384)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        best = min(best, time.perf_counter() - t0)
    return {"matmul_gflops_1thread": 10 * 2 * 384**3 / best / 1e9, "load_avg_1min": os.getloadavg()[0], "cpus": os.cpu_count()}


def _allreduce_rank(rank: int, world: int, port: int, floats: int, reps: int, result) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    buffer = torch.ones(floats)
    dist.all_reduce(buffer)  # warm-up (connections, allocation)
    dist.barrier()
    started = time.perf_counter()
    for _ in range(reps):
        dist.all_reduce(buffer)
    if rank == 0:
        result.put((time.perf_counter() - started) / reps)
    dist.destroy_process_group()


def time_allreduce(gaussians: int, world: int, reps: int = 3) -> Dict[str, float]:
    """Seconds per gloo all-reduce of `gaussians` x 59 float32 between `world` local processes."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    result = ctx.Queue()
    procs = [ctx.Process(target=_allreduce_rank, args=(r, world, port, gaussians * 59, reps, result)) for r in range(world)]
    for p in procs:
        p.start()
    seconds = result.get(timeout=600)
    for p in procs:
        p.join()
    megabytes = gaussians * 59 * 4 / 1e6
    return {"gaussians": gaussians, "MB": megabytes, "seconds": seconds, "GB/s (algorithm)": megabytes / 1e3 / seconds}


def run(label: str, data: Path, out: Path, procs: int, batch: int, steps: int, threads: int) -> Dict[str, object]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    args = ["-m", "scripts.train", "--data", str(data), "--output-dir", str(out), "--run-name", label,
            "--max-steps", str(steps), "--batch-size", str(batch), "--no-video", "--no-progress", "--num-test-renders", "0",
            "--backend", "cpu", "--device", "cpu", "--sh-degree", "1", "--max-init-points", "1000000"]
    if procs > 1:
        args.append("--distributed")
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-port", "29533", *args, "strategy:fixed"]
    else:
        command = [sys.executable, *args, "strategy:fixed"]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{label} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    metrics = json.loads((out / label / "metrics.json").read_text())
    views = metrics["steps"] * batch * procs
    return {
        "run": label, "processes": procs, "threads/proc": threads, "views/step": batch * procs, "steps": metrics["steps"],
        "train s": metrics["train_seconds"], "steps/s": metrics["steps_per_second"],
        "views/s": views / metrics["train_seconds"], "wall s": wall, "test PSNR": metrics["psnr"],
    }


def main(config: BenchDistributedConfig) -> List[Dict[str, object]]:
    from trainers.data import DemoSceneConfig, generate_demo_scene

    before = host_probe()
    with tempfile.TemporaryDirectory() as tmp:
        data = config.data or generate_demo_scene(
            DemoSceneConfig(output=Path(tmp) / "demo", width=config.width, height=config.height, num_views=24, num_points=config.init_points)
        )
        out, n = Path(tmp) / "runs", config.procs
        cores = os.cpu_count() or 1
        per_proc = max(1, cores // n)
        rows = [
            run("1proc_1view_1thread", data, out, 1, 1, config.steps, 1),
            run(f"1proc_1view_{cores}threads", data, out, 1, 1, config.steps, cores),
            run(f"1proc_{n}views_1thread", data, out, 1, n, config.steps, 1),  # schedules scale: steps / n
            run(f"{n}procs_1view_{per_proc}thread", data, out, n, 1, config.steps, per_proc),
        ]
    reduce = time_allreduce(config.allreduce_gaussians, config.procs) if config.allreduce_gaussians else None
    after = host_probe()
    print(f"host: {before['cpus']} CPUs, matmul probe {before['matmul_gflops_1thread']:.1f} / {after['matmul_gflops_1thread']:.1f} "
          f"GFLOP/s (1 thread, before / after), load average {before['load_avg_1min']:.2f} / {after['load_avg_1min']:.2f}")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    if reduce:
        print(f"gloo all-reduce, {config.procs} local processes: {reduce['gaussians']} Gaussians' gradients = {reduce['MB']:.0f} MB "
              f"in {reduce['seconds']:.3f} s ({reduce['GB/s (algorithm)']:.2f} GB/s)")
    return rows


if __name__ == "__main__":
    main(tyro.cli(BenchDistributedConfig))
