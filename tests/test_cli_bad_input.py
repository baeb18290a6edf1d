"""Issue 10, "A new user's first hour": bad CLI input and bad files give one clear line (exit 2), early, and
leave nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scenes import GaussianScene, load_scene, save_checkpoint
from scenes.atomic import atomic_path
from trainers.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
# /sys is a read-only special filesystem even for root (a chmod-read-only folder is not: we may run as root).
UNWRITABLE = Path("/sys/splatforge-test/runs")


def run_module(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def scene_of(n: int, degree: int = 0, seed: int = 0) -> GaussianScene:
    gen = torch.Generator().manual_seed(seed)
    return GaussianScene({
        "means": torch.randn(n, 3, generator=gen) * 0.3,
        "quats": torch.randn(n, 4, generator=gen),
        "log_scales": torch.full((n, 3), -3.0),
        "opacity_logits": torch.zeros(n),
        "sh_dc": torch.rand(n, 1, 3, generator=gen),
        "sh_rest": torch.zeros(n, (degree + 1) ** 2 - 1, 3),
    }, sh_degree=degree)


@pytest.fixture
def empty_ply(tmp_path) -> Path:
    path = tmp_path / "run" / "scene.ply"
    scene_of(0).save_ply(path)
    return path


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory) -> Path:
    from trainers.data import DemoSceneConfig, generate_demo_scene

    config = DemoSceneConfig(output=tmp_path_factory.mktemp("demo") / "scene", width=32, height=24, num_views=6, num_points=200)
    return generate_demo_scene(config)


@pytest.fixture
def busy_port():
    """A port held by a listening socket for the test's duration."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


# ----- 1. output folders are checked before anything loads ---------------------------------------------------
def _leftovers(folder: Path) -> list:
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def test_train_output_dir_on_special_filesystem_fails_before_the_data_loads(tmp_path):
    from scripts.train import train

    # The dataset does not exist either: the output folder error must come first.
    with pytest.raises(ValueError, match=r"--output-dir /sys/splatforge-test/runs: cannot write there"):
        train(TrainConfig(data=tmp_path / "no-dataset", output_dir=UNWRITABLE, progress=False))


def test_only_rank_zero_checks_the_output_dir(tmp_path, monkeypatch):
    """Under torchrun every rank runs train() at once; only rank 0 writes the run folder, so only it probes it (two
    ranks probing the same missing folder raced: one's mkdir failed the other's with "File exists")."""
    import scripts.train as train_module

    checked = []
    monkeypatch.setattr(train_module, "check_output_dir", lambda path, option: checked.append(path))
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        with pytest.raises((FileNotFoundError, ValueError)):  # no dataset: stops right after the checks
            train_module.train(TrainConfig(data=tmp_path / "no-dataset", output_dir=tmp_path / "runs", progress=False))
    assert checked == [tmp_path / "runs"]  # rank 0's call only


def test_train_output_dir_below_a_file_fails_and_names_the_file(tmp_path):
    from scripts.train import train

    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ValueError, match=r"--output-dir .*notes.txt/runs: cannot create the folder, .*notes.txt is a file"):
        train(TrainConfig(data=tmp_path / "no-dataset", output_dir=blocker / "runs", progress=False))
    with pytest.raises(ValueError, match=r"--output-dir .*notes.txt: .*notes.txt is a file, not a folder"):
        train(TrainConfig(data=tmp_path / "no-dataset", output_dir=blocker, progress=False))


def test_train_output_check_leaves_nothing_behind_when_a_later_step_fails(tmp_path):
    from scripts.train import train

    with pytest.raises(FileNotFoundError):  # the output folder is fine, the dataset is missing
        train(TrainConfig(data=tmp_path / "no-dataset", output_dir=tmp_path / "a" / "b" / "runs", progress=False))
    assert _leftovers(tmp_path) == []


def test_sf_train_unwritable_output_dir_is_one_line_exit_2(tmp_path):
    proc = run_module("scripts.train", "--data", str(tmp_path / "no-dataset"), "--output-dir", str(UNWRITABLE))
    assert_one_line_error(proc, "--output-dir", str(UNWRITABLE), "writable")


def test_render_and_eval_check_their_output_before_loading(tmp_path, empty_ply):
    from scripts.eval_cli import EvalConfig, run_eval
    from scripts.render_cli import RenderConfig, render_scene

    blocker = tmp_path / "file"
    blocker.write_text("x")
    # The scene is empty and the dataset missing: the output error must still come first.
    with pytest.raises(ValueError, match=r"^--output /sys/splatforge-test/runs: cannot write there"):
        render_scene(RenderConfig(scene=empty_ply, data=tmp_path / "no-dataset", output=UNWRITABLE))
    with pytest.raises(ValueError, match=r"^--output .*file/eval.json: .*/file is a file, not a folder"):
        run_eval(EvalConfig(scene=empty_ply, data=tmp_path / "no-dataset", output=blocker / "eval.json"))
    with pytest.raises(ValueError, match=r"^--output .*: is a folder"):
        run_eval(EvalConfig(scene=empty_ply, data=tmp_path / "no-dataset", output=tmp_path))


def test_demo_checks_its_output_folders_before_generating(tmp_path):
    from scripts.demo import DemoConfig, run_demo
    from trainers.data import DemoSceneConfig

    with pytest.raises(ValueError, match=r"^--scene.output /proc/splatforge-test"):
        run_demo(DemoConfig(scene=DemoSceneConfig(output=Path("/proc/splatforge-test/scene")),
                            train=TrainConfig(output_dir=tmp_path / "runs"), serve=False))
    with pytest.raises(ValueError, match=r"^--train.output-dir /sys/splatforge-test/runs"):
        run_demo(DemoConfig(scene=DemoSceneConfig(output=tmp_path / "scene"), train=TrainConfig(output_dir=UNWRITABLE),
                            serve=False))
    assert _leftovers(tmp_path) == []


# ----- 2. impossible numbers are rejected when the config is built -----------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"max_steps": 0}, "--max-steps must be > 0, got 0"),
    ({"max_steps": -5}, "--max-steps must be > 0, got -5"),
    ({"max_seconds": 0.0}, "--max-seconds must be > 0, got 0.0"),
    ({"downscale": 0}, "--downscale must be >= 1, got 0"),
    ({"sh_degree": 4}, "--sh-degree must be <= 3, got 4"),
    ({"sh_degree": -1}, "--sh-degree must be >= 0, got -1"),
    ({"sh_degree_interval": 0}, "--sh-degree-interval must be > 0, got 0"),
    ({"ssim_weight": 1.5}, "--ssim-weight must be <= 1, got 1.5"),
    ({"init_opacity": 1.0}, "--init-opacity must be < 1, got 1.0"),
    ({"background": (0.0, 2.0, 0.0)}, "--background must be RGB values in [0, 1]"),
    ({"coarse_to_fine": (500, 100)}, "--coarse-to-fine steps must be increasing"),
    ({"eval_every": -1}, "--eval-every must be >= 0, got -1"),
    ({"eval_at_seconds": (-1.0,)}, "--eval-at-seconds must be > 0, got -1.0"),
    ({"checkpoint_every": -1}, "--checkpoint-every must be >= 0, got -1"),
    ({"viewer_port": 65536}, "--viewer-port must be <= 65535, got 65536"),
    ({"viewer_port": -1}, "--viewer-port must be >= 0, got -1"),
])
def test_train_config_rejects_impossible_numbers(kwargs, message):
    with pytest.raises(ValueError) as excinfo:
        TrainConfig(**kwargs)
    assert str(excinfo.value).startswith(message)


def test_train_config_accepts_its_defaults_and_edge_values():
    TrainConfig()
    TrainConfig(max_steps=1, sh_degree=0, downscale=1, viewer_port=0, eval_every=0, background=(1.0, 1.0, 1.0))


def test_other_cli_configs_reject_impossible_numbers(tmp_path):
    from scripts.demo import DemoConfig
    from scripts.eval_cli import EvalConfig
    from scripts.render_cli import RenderConfig
    from scripts.view import ViewConfig

    scene = tmp_path / "s.ply"
    cases = [
        (lambda: RenderConfig(scene=scene, fps=0), "--fps must be >= 1, got 0"),
        (lambda: RenderConfig(scene=scene, num_frames=-3), "--num-frames must be >= 1, got -3"),
        (lambda: RenderConfig(scene=scene, downscale=0), "--downscale must be >= 1, got 0"),
        (lambda: EvalConfig(scene=scene, data=tmp_path, downscale=-2), "--downscale must be >= 1, got -2"),
        (lambda: EvalConfig(scene=scene, data=tmp_path, save_renders=-1), "--save-renders must be >= 0, got -1"),
        (lambda: ViewConfig(scene=scene, port=70000), "--port must be <= 65535, got 70000"),
        (lambda: ViewConfig(scene=scene, max_resolution=8), "--max-resolution must be >= 16, got 8"),
        (lambda: ViewConfig(scene=scene, background=(0, 0, -1)), "--background must be RGB values in [0, 1]"),
        (lambda: DemoConfig(port=-1), "--port must be >= 0, got -1"),
        (lambda: DemoConfig(train=TrainConfig(max_steps=0)), "--max-steps must be > 0, got 0"),
    ]
    for build, message in cases:
        with pytest.raises(ValueError) as excinfo:
            build()
        assert str(excinfo.value).startswith(message), (message, str(excinfo.value))


def test_sf_train_max_steps_0_is_one_line_exit_2_and_writes_nothing(tmp_path):
    proc = run_module("scripts.train", "--max-steps", "0", "--output-dir", str(tmp_path / "runs"))
    assert assert_one_line_error(proc) == "error: --max-steps must be > 0, got 0"
    assert _leftovers(tmp_path) == []


def test_sf_view_bad_port_and_bad_number_are_one_line(tmp_path):
    assert_one_line_error(run_module("scripts.view", "--scene", str(tmp_path / "s.ply"), "--port", "99999"),
                          "--port must be <= 65535, got 99999")
    assert_one_line_error(run_module("scripts.render_cli", "--scene", "s.ply", "--fps", "abc"), "--fps", "abc")


# ----- 3. an empty scene is refused by every command --------------------------------------------------------
def test_empty_scene_is_refused_by_load_scene_unless_allowed(tmp_path, empty_ply):
    with pytest.raises(ValueError, match=r"scene.ply: the scene has no Gaussians"):
        load_scene(empty_ply)
    assert len(load_scene(empty_ply, allow_empty=True)) == 0
    checkpoint = tmp_path / "empty.pt"
    save_checkpoint(checkpoint, {"scene": scene_of(0).state()})
    with pytest.raises(ValueError, match=r"empty.pt: the scene has no Gaussians"):
        load_scene(checkpoint)


def test_render_eval_and_view_refuse_an_empty_scene(tmp_path, empty_ply, tiny_demo, capsys):
    from scripts.eval_cli import EvalConfig, run_eval
    from scripts.render_cli import RenderConfig, render_scene
    from scripts.view import ViewConfig, main

    with pytest.raises(ValueError, match="no Gaussians"):
        render_scene(RenderConfig(scene=empty_ply, data=tiny_demo, output=tmp_path / "renders"))
    assert not (tmp_path / "renders").exists()
    with pytest.raises(ValueError, match="no Gaussians"):
        run_eval(EvalConfig(scene=empty_ply, data=tiny_demo))
    assert not (empty_ply.parent / "eval.json").exists()
    capsys.readouterr()
    assert main(ViewConfig(scene=empty_ply, port=0)) == 2
    assert "no Gaussians" in capsys.readouterr().err


def test_sf_eval_empty_scene_is_one_line_exit_2(empty_ply, tiny_demo):
    proc = run_module("scripts.eval_cli", "--scene", str(empty_ply), "--data", str(tiny_demo))
    assert_one_line_error(proc, str(empty_ply), "no Gaussians")


# ----- 4. an explicitly requested busy port is an error, the default one moves on and says so ---------------
def test_viewer_explicit_busy_port_fails_naming_it(busy_port):
    from viewer.server import PortInUseError, ViewerServer

    with pytest.raises(PortInUseError, match=rf"--port {busy_port}: port {busy_port} on 127.0.0.1 is already in use.*--port 0"):
        ViewerServer(scene_of(10), port=busy_port, verbose=False)


def test_viewer_default_port_moves_on_and_prints_it(busy_port, monkeypatch, capsys):
    import viewer.server as server_module

    monkeypatch.setattr(server_module, "DEFAULT_PORT", busy_port)
    server = server_module.ViewerServer(scene_of(10), verbose=False)
    try:
        assert server.port != busy_port
        assert f"port {busy_port} is busy; the viewer uses port {server.port} instead" in capsys.readouterr().out
    finally:
        server.stop()


def test_sf_view_and_sf_train_busy_port_errors(tmp_path, busy_port, capsys):
    from scripts.train import train
    from scripts.view import ViewConfig, main

    scene = tmp_path / "scene.ply"
    scene_of(10).save_ply(scene)
    assert main(ViewConfig(scene=scene, port=busy_port)) == 2
    err = capsys.readouterr().err
    assert f"--port {busy_port}" in err and "already in use" in err and "--port 0" in err
    # sf-train --viewer: the busy port is found before the dataset loads (there is none here).
    with pytest.raises(ValueError, match=rf"--viewer-port {busy_port}: .*already in use.*--viewer-port 0"):
        train(TrainConfig(data=tmp_path / "no-dataset", output_dir=tmp_path / "runs", viewer=True, viewer_port=busy_port))


# ----- 5. interrupted atomic writes do not leave temp files forever ------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_killed_writer_leaves_a_temp_file_that_the_next_write_removes(tmp_path):
    target = tmp_path / "latest.pt"
    code = (
        "import sys, time\n"
        "from scenes.atomic import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_bytes(b'half a checkpoint')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        leftovers = list(tmp_path.glob(".latest.pt.*.tmp"))
        assert len(leftovers) == 1 and f".{writer.pid}." in leftovers[0].name
        # While the writer lives, another write of the same target must not remove its temp file.
        save_checkpoint(target, {"scene": scene_of(3).state()})
        assert leftovers[0].exists()
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    assert leftovers[0].exists()  # killed mid-write: nothing cleaned up
    save_checkpoint(target, {"scene": scene_of(3).state()})
    assert not leftovers[0].exists()
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_stale_temp_cleanup_only_touches_the_same_target(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".scene.ply.{dead}.abc123xy.tmp"
    old_style = tmp_path / ".scene.ply.k2j3h4g5.tmp"  # the former name, without a pid: removed once old
    live = tmp_path / f".scene.ply.{os.getpid()}.zzzz1111.tmp"  # this process may be writing it
    other_target = tmp_path / f".scene.ply.bak.{dead}.abc123xy.tmp"
    fresh_old_style = tmp_path / ".scene.ply.q1w2e3r4.tmp"
    for path in (stale, old_style, live, other_target, fresh_old_style):
        path.write_bytes(b"x")
    hour_ago = time.time() - 3600
    os.utime(old_style, (hour_ago, hour_ago))
    with atomic_path(tmp_path / "scene.ply") as tmp:
        tmp.write_bytes(b"ply\n")
    assert not stale.exists() and not old_style.exists()
    assert live.exists() and other_target.exists() and fresh_old_style.exists()


# ----- 6. files that are not (complete) Gaussian PLYs ------------------------------------------------------
def test_non_ply_file_renamed_ply_says_so(tmp_path):
    png = tmp_path / "photo.ply"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(ValueError, match=r"photo.ply: not a PLY file \(it starts with"):
        load_scene(png)
    empty = tmp_path / "empty.ply"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.ply: not a PLY file \(an empty file\)"):
        load_scene(empty)


def test_truncated_ply_says_truncated(tmp_path):
    path = tmp_path / "cut.ply"
    scene_of(20).save_ply(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match=r"cut.ply: truncated PLY file"):
        load_scene(path)
    path.write_bytes(data[: data.index(b"end_header") - 5])  # cut inside the header
    with pytest.raises(ValueError, match=r"cut.ply: truncated PLY file"):
        load_scene(path)


def test_ply_missing_one_property_names_it(tmp_path):
    from plyfile import PlyData, PlyElement

    path = tmp_path / "no_opacity.ply"
    scene_of(5).save_ply(path)
    vertex = PlyData.read(str(path))["vertex"].data
    names = [n for n in vertex.dtype.names if n != "opacity"]
    trimmed = np.empty(len(vertex), dtype=[(n, "<f4") for n in names])
    for n in names:
        trimmed[n] = vertex[n]
    PlyData([PlyElement.describe(trimmed, "vertex")]).write(str(path))
    with pytest.raises(ValueError, match=r"no_opacity.ply: not a 3D Gaussian splatting PLY \(incomplete\): missing vertex property 'opacity'$"):
        load_scene(path)


# ----- 7. --data help lists every format; --skip-missing-frames reaches the loader -------------------------
def test_train_help_lists_every_dataset_format_and_skip_missing_frames(capsys):
    import tyro

    with pytest.raises(SystemExit):
        tyro.cli(TrainConfig, args=["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("nerfstudio transforms.json", "D-NeRF transforms_*.json", "COLMAP", "sparse/0", ".bin or .txt",
                   "LLFF poses_bounds.npy", "--skip-missing-frames", "skip frames whose images are missing"):
        assert needle.lower() in text.lower(), needle


def test_skip_missing_frames_is_passed_to_load_dataset_only_when_set(tmp_path, monkeypatch):
    import scripts.train as train_module

    calls = []

    class Stop(Exception):
        pass

    def fake_load_dataset(path, **kwargs):
        calls.append(kwargs)
        raise Stop

    monkeypatch.setattr(train_module, "load_dataset", fake_load_dataset)
    for flag in (False, True):
        with pytest.raises(Stop):
            train_module.train(TrainConfig(data=tmp_path, output_dir=tmp_path / "runs", skip_missing_frames=flag))
    assert "skip_missing_frames" not in calls[0] and calls[1]["skip_missing_frames"] is True
