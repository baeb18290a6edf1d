"""Gabor vs Gaussian at an equal primitive count (MCMC cap) and an equal number of steps (issue 12's quality bar).

For each dataset and cap, trains `--model gaussian` and `--model gabor` with the same sf-train command otherwise
(each run in its own process, so peak memory is its own), then prints a table: test PSNR / SSIM, primitives, active
Gabor terms, scene memory (parameter bytes) and PLY size, render ms per test image, training time and peak RSS.

    OMP_NUM_THREADS=1 python -m scripts.bench_gabor_quality --datasets lego fern --caps 20000 100000 --steps 3000

Results also go to `<output-dir>/bench_gabor_quality.json`. Runs whose metrics.json already exists are reused
(`--rerun` trains them again), so an interrupted benchmark resumes.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import tyro

from scripts.bench_rasterizer import write_results

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATASETS = {
    # name: (folder, sf-train arguments of the dataset)
    "lego": ("nerf_synthetic_lego_400", ["--downscale", "2"]),
    "fern": ("llff_fern", ["--downscale", "8"]),
}


@dataclass
class BenchConfig:
    datasets: Tuple[str, ...] = ("lego", "fern")
    """Any of: lego (NeRF-synthetic lego at 200x200), fern (LLFF fern images_8)."""
    caps: Tuple[int, ...] = (20_000, 100_000)
    """MCMC primitive caps (both models reach the cap)."""
    steps: int = 3000
    models: Tuple[str, ...] = ("gaussian", "gabor")
    data_root: Path = DATA
    output_dir: Path = Path("outputs/bench_gabor")
    rerun: bool = False
    max_seconds: Optional[float] = None
    """Also stop each run after this many seconds of training (then the step counts may differ: reported)."""
    extra: str = ""
    """More sf-train arguments for every run, one string (e.g. "--downscale 4")."""
    gabor_extra: str = ""
    """More sf-train arguments for the Gabor runs only (e.g. "--gabor.weight-l1 0.001")."""
    strategy_extra: str = ""
    """More MCMC strategy arguments (e.g. "--strategy.refine-start 200")."""


def train_command(cfg: BenchConfig, dataset: str, cap: int, model: str) -> Tuple[List[str], Path]:
    """The sf-train command line of one run and its run folder."""
    folder, data_args = DATASETS[dataset]
    name = f"{dataset}_cap{cap}_{model}"
    init = str(cap)  # start at the cap (seed points permitting): both models hold the same count throughout
    refine_stop = str(max(int(cfg.steps * 0.8), 600))
    cmd = [
        sys.executable, "-m", "scripts.train", "--data", str(cfg.data_root / folder), *data_args,
        "--model", model, "--max-steps", str(cfg.steps), "--output-dir", str(cfg.output_dir), "--run-name", name,
        "--no-video", "--no-progress", "--init-opacity", "0.5", "--init-random-points", init, "--max-init-points", init,
        "--gabor.refine-stop", refine_stop,
    ]
    if cfg.max_seconds:
        cmd += ["--max-seconds", str(cfg.max_seconds)]
    cmd += shlex.split(cfg.extra) + (shlex.split(cfg.gabor_extra) if model == "gabor" else [])
    cmd += ["strategy:mcmc", "--strategy.cap-max", str(cap), "--strategy.refine-stop", refine_stop]
    cmd += shlex.split(cfg.strategy_extra)
    return cmd, cfg.output_dir / name


def scene_bytes(run: Path) -> Dict[str, float]:
    """Parameter bytes of the final scene (float32) and its PLY size."""
    from scenes import load_scene

    scene = load_scene(run / "scene.ply")
    params = sum(p.numel() * 4 for p in scene.params.values())
    return {"scene_mb": params / 2**20, "ply_mb": (run / "scene.ply").stat().st_size / 2**20}


def run_one(cfg: BenchConfig, dataset: str, cap: int, model: str) -> Dict[str, object]:
    cmd, run = train_command(cfg, dataset, cap, model)
    printable = " ".join(shlex.quote(c) for c in cmd[1:])
    print(f"[bench] OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python {printable}", flush=True)
    if cfg.rerun or not (run / "metrics.json").is_file():
        subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[1])
    metrics = json.loads((run / "metrics.json").read_text())
    row = {
        "dataset": dataset, "cap": cap, "model": model, "command": printable,
        "psnr": metrics["psnr"], "ssim": metrics["ssim"], "steps": metrics["steps"],
        "primitives": metrics["num_gaussians"], "active_terms": metrics.get("gabor_active_terms", 0.0),
        "render_ms": metrics["render_ms_per_image"], "train_s": metrics["train_seconds"],
        "peak_rss_mb": metrics["peak_memory_mb"],
    }
    row.update(scene_bytes(run))
    return row


def table(rows: List[Dict[str, object]]) -> str:
    head = ("| dataset | cap | model | steps | primitives | active terms | test PSNR | SSIM | dPSNR vs gaussian | "
            "scene MB | PLY MB | render ms | train s | peak RSS MB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    base = {(r["dataset"], r["cap"]): r["psnr"] for r in rows if r["model"] == "gaussian"}
    for r in rows:
        ref = base.get((r["dataset"], r["cap"]))
        delta = f"{r['psnr'] - ref:+.2f}" if ref is not None and r["model"] != "gaussian" else ""
        lines.append(
            f"| {r['dataset']} | {r['cap']} | {r['model']} | {r['steps']} | {r['primitives']} | {int(r['active_terms'])} | "
            f"{r['psnr']:.2f} | {r['ssim']:.4f} | {delta} | {r['scene_mb']:.1f} | {r['ply_mb']:.1f} | "
            f"{r['render_ms']:.0f} | {r['train_s']:.0f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(cfg: BenchConfig) -> List[Dict[str, object]]:
    unknown = [d for d in cfg.datasets if d not in DATASETS]
    if unknown:
        raise SystemExit(f"error: unknown dataset(s) {unknown}; choose from {sorted(DATASETS)}")
    rows = []
    for dataset in cfg.datasets:
        for cap in cfg.caps:
            for model in cfg.models:
                rows.append(run_one(cfg, dataset, cap, model))
                print(table(rows), flush=True)
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    out = cfg.output_dir / "bench_gabor_quality.json"  # rows of earlier invocations are kept (same key: replaced)
    earlier = json.loads(out.read_text()) if out.is_file() else []
    keys = {(r["dataset"], r["cap"], r["model"]) for r in rows}
    merged = [r for r in earlier if (r["dataset"], r["cap"], r["model"]) not in keys] + rows
    write_results(out, merged)
    print(table(merged))
    return rows


if __name__ == "__main__":
    main(tyro.cli(BenchConfig))
