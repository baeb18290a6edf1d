"""sf-render-batch: jobs as Ray tasks on a local 2-CPU Ray; a failing job is reported, the others finish; resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from render.camera_path import CameraPath, Keyframe, save_camera_path
from scenes import GaussianScene
from scripts.batch_jobs import JobsFileError, load_jobs
from scripts.render_batch import RenderBatchConfig, ray_runtime_env, run_batch


def _scene(seed: int) -> GaussianScene:
    gen = torch.Generator().manual_seed(seed)
    n = 200
    return GaussianScene(
        {
            "means": torch.randn(n, 3, generator=gen) * 0.5,
            "quats": torch.randn(n, 4, generator=gen),
            "log_scales": torch.full((n, 3), -2.5),
            "opacity_logits": torch.full((n,), 2.0),
            "sh_dc": torch.randn(n, 1, 3, generator=gen),
            "sh_rest": torch.zeros(n, 0, 3),
        },
        sh_degree=0,
    )


def _path(frames: int) -> CameraPath:
    """A camera circling the origin at distance 3, looking at it (OpenCV axes)."""
    keys = []
    for i in range(4):
        a = 2 * math.pi * i / 4
        eye = np.array([3 * math.cos(a), 0.3, 3 * math.sin(a)])
        forward = -eye / np.linalg.norm(eye)
        right = np.cross(forward, [0.0, -1.0, 0.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        c2w = np.eye(4)
        c2w[:3, :3] = np.stack([right, down, forward], axis=1)
        c2w[:3, 3] = eye
        keys.append(Keyframe.from_opencv_c2w(c2w, 0.9))
    return CameraPath(keys, fps=frames, seconds=1.0, width=32, height=24)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is the optional [distributed] extra")
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=ray_runtime_env(), log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def jobs_file(tmp_path) -> Path:
    _scene(0).save_ply(tmp_path / "a.ply")
    _scene(1).save_ply(tmp_path / "b.ply")
    (tmp_path / "broken.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n")  # parses, no splats
    save_camera_path(tmp_path / "path5.json", _path(5))
    save_camera_path(tmp_path / "path3.json", _path(3))
    jobs = [
        {"name": "a", "scene": "a.ply", "camera_path": "path5.json", "output": "out/a"},
        {"name": "broken", "scene": "broken.ply", "camera_path": "path3.json", "output": "out/broken"},
        {"name": "b", "scene": "b.ply", "camera_path": "path3.json", "output": "out/b", "background": [1, 1, 1]},
    ]
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps({"jobs": jobs}))
    return path


def test_batch_renders_reports_the_failure_and_resumes(ray_local, jobs_file):
    root = jobs_file.parent
    report = run_batch(RenderBatchConfig(jobs=jobs_file, chunk_frames=2, progress=False))
    by_name = {j["name"]: j for j in report["jobs"]}
    assert by_name["a"]["status"] == "done" and by_name["a"]["rendered"] == 5
    assert by_name["b"]["status"] == "done" and by_name["b"]["rendered"] == 3
    assert by_name["broken"]["status"] == "failed" and "broken.ply" in by_name["broken"]["error"]
    assert json.loads((root / "jobs.report.json").read_text())["jobs"][1]["status"] == "failed"
    # Outputs: every frame of the good jobs, their videos; nothing that looks finished for the failed one.
    frames_a = sorted((root / "out/a").glob("frame_*.png"))
    assert len(frames_a) == 5 and (root / "out/a/camera_path.mp4").is_file() and (root / "out/b/camera_path.mp4").is_file()
    assert not (root / "out/broken/camera_path.mp4").exists() and not list((root / "out/broken").glob("*.png"))
    assert not list(root.rglob(".*.tmp")) and not list(root.rglob(".frame_*"))
    a0, b0 = imageio.imread(frames_a[0]), imageio.imread(root / "out/b/frame_00000.png")
    assert a0.shape == (24, 32, 3) and a0.std() > 5  # something was drawn
    assert b0[0, 0].tolist() == [255, 255, 255]  # the job's own background
    from scripts.render_cli import RenderConfig, render_scene

    render_scene(RenderConfig(scene=root / "a.ply", mode="camera-path", camera_path=root / "path5.json", output=root / "ref"))
    assert np.array_equal(imageio.imread(root / "ref/frame_00003.png"), imageio.imread(root / "out/a/frame_00003.png"))

    # Resume: a lost frame and video are redone, finished frames are not touched.
    (root / "out/a/frame_00002.png").unlink()
    (root / "out/a/camera_path.mp4").unlink()
    kept = (root / "out/a/frame_00004.png").stat().st_mtime_ns
    report = run_batch(RenderBatchConfig(jobs=jobs_file, chunk_frames=2, progress=False))
    by_name = {j["name"]: j for j in report["jobs"]}
    assert (by_name["a"]["rendered"], by_name["a"]["skipped"], by_name["a"]["status"]) == (1, 4, "done")
    assert (by_name["b"]["rendered"], by_name["b"]["skipped"], by_name["b"]["status"]) == (0, 3, "done")
    assert (root / "out/a/camera_path.mp4").is_file() and (root / "out/a/frame_00002.png").is_file()
    assert (root / "out/a/frame_00004.png").stat().st_mtime_ns == kept


def test_bad_jobs_files_name_the_job_and_field(tmp_path):
    _scene(0).save_ply(tmp_path / "a.ply")
    save_camera_path(tmp_path / "p.json", _path(2))
    cases = [
        ([{"name": "x", "scene": "a.ply", "camera_path": "p.json"}], r"job 0 \('x'\): missing required field 'output'"),
        ([{"name": "x", "scene": "gone.ply", "camera_path": "p.json", "output": "o"}], r"job 0 \('x'\): field 'scene': .*gone\.ply does not exist"),
        ([{"name": "x", "scene": "a.ply", "camera_path": "nope.json", "output": "o"}], r"field 'camera_path': .*nope\.json does not exist"),
        ([{"name": "x", "scene": "a.ply", "output": "o"}], r"mode test needs field 'data'"),
        ([{"name": "x", "scene": "a.ply", "camera_path": "p.json", "output": "o", "fps": "fast"}], r"field 'fps' must be a positive integer"),
        ([{"name": "x", "scene": "a.ply", "camera_path": "p.json", "output": "o", "colour": 1}], r"unknown field 'colour'"),
        ([{"name": "x", "scene": "a.ply", "camera_path": "p.json", "output": "o"}] * 2, r"'x' is used more than once"),
        ([3], r"job 0: expected an object"),
        ({"jobs": []}, r"non-empty list"),
    ]
    for doc, message in cases:
        path = tmp_path / "jobs.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(JobsFileError, match=message):
            load_jobs(path)
    path.write_text("{not json")
    with pytest.raises(JobsFileError, match=r"jobs\.json: not valid JSON"):
        load_jobs(path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_jobs(tmp_path / "missing.json")


def test_missing_ray_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    import sys

    from scripts import render_batch

    _scene(0).save_ply(tmp_path / "a.ply")
    save_camera_path(tmp_path / "p.json", _path(2))
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"scene": "a.ply", "camera_path": "p.json", "output": "o"}]))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as where it is not installed
    monkeypatch.setattr(sys, "argv", ["sf-render-batch", str(jobs)])
    with pytest.raises(SystemExit) as exit_info:
        render_batch.entrypoint()
    assert exit_info.value.code == 2
    assert "pip install -e '.[distributed]'" in capsys.readouterr().err
