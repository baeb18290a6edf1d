"""sf-render-batch: render many (scene, cameras, output) jobs as Ray tasks, resumably, on one machine or a cluster.

    sf-render-batch jobs.json                        # a local Ray on this machine
    sf-render-batch jobs.json --ray-address auto     # the Ray cluster this node belongs to (ray start ...)

Frames are split into chunks, one Ray task each; a frame whose PNG exists is skipped (resume), every file is written
atomically, and a job's video is written only once all its frames exist. A failing job is reported with its error and
the others go on. The report (also written as JSON) lists each job's state, frames rendered and skipped, and error.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import tyro

from scenes.atomic import atomic_path

from .batch_jobs import BatchJob, load_jobs
from .render_cli import RenderConfig, frame_path, video_path, views_for

RAY_MISSING = (
    "sf-render-batch needs Ray, an optional extra: pip install -e '.[distributed]' (from the splatforge checkout) "
    "or pip install 'ray>=2.9'"
)


@dataclass
class RenderBatchConfig:
    """Render the jobs of a JSON file as Ray tasks (see scripts/batch_jobs.py for the file's fields)."""

    jobs: tyro.conf.Positional[Path]
    ray_address: Optional[str] = None
    """Ray cluster to join ("auto", or "ray://host:10001"); default: start a local Ray on this machine."""
    num_cpus: Optional[int] = None
    """CPUs of the local Ray (default: all). Ignored with --ray-address."""
    chunk_frames: int = 8
    """Frames per Ray task."""
    report: Optional[Path] = None
    """Where to write the JSON report (default: <jobs file stem>.report.json beside the jobs file)."""
    progress: bool = True


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise ImportError(RAY_MISSING) from exc
    return ray


def ray_runtime_env() -> Dict[str, object]:
    """Workers import this checkout (not another installed copy) and use one thread each (one CPU per task)."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}}


# ----- the work, run inside Ray workers ---------------------------------------------------------------------
_SCENES: Dict[tuple, object] = {}


def _scene(path: Path):
    """Scene per worker process, reloaded when the file changes."""
    from scenes import load_scene

    key = (str(path), path.stat().st_mtime_ns)
    if key not in _SCENES:
        _SCENES.clear()
        _SCENES[key] = load_scene(path)
    return _SCENES[key]


def render_chunk(config: RenderConfig, cameras: Sequence, indices: Sequence[int], background) -> List[int]:
    """Render frames `indices` of a job (its `cameras`), each PNG written atomically; returns the indices."""
    import torch

    from render.composite import mesh_view
    from render.writers import write_image

    from .render_cli import render_view

    torch.set_num_threads(1)
    view = mesh_view(config.meshes, config.mesh_layout, fallback=render_view)
    scene = _scene(config.scene)
    with torch.no_grad():
        for i, camera in zip(indices, cameras):
            write_image(frame_path(config.output, i), view(scene, camera, background, config.backend))
    return list(indices)


def write_job_video(config: RenderConfig, num_frames: int, fps: int) -> str:
    """The job's MP4 from its frames on disk (atomic), once they all exist."""
    import imageio.v2 as imageio

    from render.writers import write_video

    path = video_path(config)
    write_video(path, (imageio.imread(frame_path(config.output, i)) for i in range(num_frames)), fps=fps)
    return str(path)


# ----- the driver -------------------------------------------------------------------------------------------
@dataclass
class JobState:
    job: BatchJob
    num_frames: int = 0
    fps: int = 24
    skipped: int = 0
    rendered: int = 0
    pending: int = 0
    status: str = "pending"
    error: Optional[str] = None
    video: Optional[str] = None
    extra: Dict[str, object] = field(default_factory=dict)

    def record(self) -> Dict[str, object]:
        return {
            "name": self.job.name, "status": self.status, "frames": self.num_frames, "rendered": self.rendered,
            "skipped": self.skipped, "output": str(self.job.config.output), "video": self.video, "error": self.error,
        }


def _error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)  # RayTaskError carries the task's own exception
    inner = cause if isinstance(cause, BaseException) else exc
    return f"{type(inner).__name__}: {inner}"


def run_batch(config: RenderBatchConfig) -> Dict[str, object]:
    """Render every job; returns the report (also written to JSON). Ray is started here unless already running."""
    if config.chunk_frames < 1:
        raise ValueError(f"--chunk-frames must be at least 1, got {config.chunk_frames}")
    jobs = load_jobs(config.jobs)
    ray = import_ray()
    if not ray.is_initialized():
        if config.ray_address:
            ray.init(address=config.ray_address, runtime_env=ray_runtime_env())
        else:
            ray.init(num_cpus=config.num_cpus, include_dashboard=False, runtime_env=ray_runtime_env())
    chunk_task = ray.remote(num_cpus=1)(render_chunk)
    video_task = ray.remote(num_cpus=1)(write_job_video)
    states = [JobState(job) for job in jobs]
    futures: Dict[object, tuple] = {}
    started = time.perf_counter()
    for state in states:
        cfg = state.job.config
        try:
            cameras, background, state.fps = views_for(cfg)
        except Exception as exc:  # a bad camera path or dataset fails this job only
            state.status, state.error = "failed", _error_text(exc)
            continue
        state.num_frames = len(cameras)
        todo = [i for i in range(len(cameras)) if not frame_path(cfg.output, i).is_file()]
        state.skipped = len(cameras) - len(todo)
        cfg.output.mkdir(parents=True, exist_ok=True)
        for k in range(0, len(todo), config.chunk_frames):
            chunk = todo[k : k + config.chunk_frames]
            ref = chunk_task.remote(cfg, [cameras[i] for i in chunk], chunk, background)
            futures[ref] = ("frames", state, len(chunk))
            state.pending += 1
        state.status = "running"
        if not todo:
            _finish(state, futures, video_task)
    bars = _progress_bars(config.progress, states)
    while futures:
        ready, _ = ray.wait(list(futures), num_returns=1)
        kind, state, count = futures.pop(ready[0])
        try:
            value = ray.get(ready[0])
        except Exception as exc:
            if state.status != "failed":
                state.status, state.error = "failed", _error_text(exc)
                if bars:
                    bars[0].update(1)
                    bars[1].total -= state.num_frames - state.skipped - state.rendered  # never coming
                    bars[1].refresh()
            state.pending -= kind == "frames"
            continue
        if kind == "frames":
            state.pending -= 1
            state.rendered += len(value)
            if bars and state.status != "failed":
                bars[1].update(len(value))
            if state.pending == 0 and state.status != "failed":
                _finish(state, futures, video_task)
        else:
            state.status, state.video = "done", value
            if bars:
                bars[0].update(1)
    for bar in bars:
        bar.close()
    report = {"jobs_file": str(config.jobs), "seconds": time.perf_counter() - started, "jobs": [s.record() for s in states]}
    report_path = config.report or config.jobs.with_name(config.jobs.stem + ".report.json")
    with atomic_path(report_path) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    report["report_path"] = str(report_path)
    return report


def _finish(state: JobState, futures: Dict[object, tuple], video_task) -> None:
    """All frames exist: write the video (skipped when a previous run already wrote it)."""
    existing = video_path(state.job.config)
    if existing.is_file() and state.rendered == 0:
        state.status, state.video = "done", str(existing)
        return
    futures[video_task.remote(state.job.config, state.num_frames, state.fps)] = ("video", state, 0)


def _progress_bars(enabled: bool, states: List[JobState]) -> list:
    if not enabled:
        return []
    from tqdm import tqdm

    done = sum(s.status in ("done", "failed") for s in states)
    total_frames = sum(s.num_frames - s.skipped for s in states)
    return [
        tqdm(total=len(states), initial=done, desc="jobs", unit="job", position=0, dynamic_ncols=True),
        tqdm(total=total_frames, desc="frames", unit="frame", position=1, dynamic_ncols=True),
    ]


def print_report(report: Dict[str, object]) -> None:
    for job in report["jobs"]:
        line = f"[{job['status']}] {job['name']}: {job['rendered']} rendered, {job['skipped']} skipped of {job['frames']} frames"
        if job["error"]:
            line += f" -- {job['error']}"
        print(line)
    print(f"report: {report['report_path']}")


def entrypoint() -> None:
    from ._cli import parse_config, run_cli

    def main() -> int:
        config = parse_config(RenderBatchConfig)
        try:
            report = run_batch(config)
        except ImportError as exc:
            if RAY_MISSING in str(exc):
                raise ValueError(RAY_MISSING) from None
            raise
        print_report(report)
        return sum(j["status"] != "done" for j in report["jobs"])

    failed = run_cli(main)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    entrypoint()
