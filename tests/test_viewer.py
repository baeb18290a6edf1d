"""Viewer: camera bridge, adaptive resolution, per-client render loop, CLI errors, and headless-browser end to end."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from render import Camera, render
from render.conventions import look_at_w2c, opencv_w2c_to_viser_pose
from scenes import GaussianScene
from viewer import (
    VISER_MAX_DEPTH,
    AdaptiveResolution,
    ClientRenderLoop,
    ViewSettings,
    camera_from_client,
    camera_from_viser_pose,
    fit_resolution,
    render_frame,
)
from viewer.frames import FrameAborted
from browser_support import poll

REPO = Path(__file__).resolve().parents[1]


def ball_scene(n: int = 300, radius: float = 0.5, seed: int = 0) -> GaussianScene:
    """A few hundred opaque coloured Gaussians in a ball at the origin."""
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3))
    pts = pts / np.linalg.norm(pts, axis=1, keepdims=True) * radius * rng.random((n, 1)) ** (1 / 3)
    colors = np.clip(rng.random((n, 3)) * 0.6 + 0.4 * np.array([1.0, 0.3, 0.1]), 0, 1)
    return GaussianScene.from_points(pts, colors, sh_degree=1, initial_opacity=0.9, scale_multiplier=1.5)


class TimeColoredScene:
    """A scene whose colour goes from blue (t=0) to red (t=1): tests the time seam."""

    time_range = (0.0, 1.0)

    def __init__(self, base: GaussianScene):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    @property
    def means(self) -> torch.Tensor:
        return self.base.means

    def rasterizer_inputs(self, camera, sh_degree=None):
        t = 0.0 if camera.time is None else float(camera.time)
        n = len(self.base)
        colors = torch.tensor([t, 0.1, 1.0 - t], dtype=torch.float32).expand(n, 3).contiguous()
        return dict(
            means=self.base.means,
            quats=self.base.quats,
            scales=self.base.scales,
            opacities=self.base.opacities,
            colors=colors,
            sh_degree=None,
        )


def viser_camera_at(eye, target, fov=0.8, width=320, height=240, up=(0.0, 0.0, 1.0)):
    wxyz, position = opencv_w2c_to_viser_pose(look_at_w2c(eye, target, up))
    return SimpleNamespace(wxyz=wxyz, position=position, fov=fov, image_width=width, image_height=height)


# ----- camera bridge ------------------------------------------------------------------------------------
def project(camera: Camera, point) -> np.ndarray:
    p = camera.world_to_camera.double() @ torch.tensor([*point, 1.0], dtype=torch.float64)
    uv = camera.K.double() @ p[:3]
    return (uv[:2] / uv[2]).numpy()


def test_bridge_identity_pose_projects_known_point():
    fov = math.radians(60)
    cam = camera_from_viser_pose((1, 0, 0, 0), (0, 0, 0), fov, 640, 480, max_resolution=4096)
    f = 0.5 * 480 / math.tan(fov / 2)
    assert (cam.width, cam.height) == (640, 480)
    np.testing.assert_allclose(project(cam, (1.0, 0.5, 5.0)), [320 + f / 5, 240 + f * 0.5 / 5], atol=1e-3)


def test_bridge_rotated_pose_and_translation():
    # 180 degrees about x: the OpenCV camera looks down world -z with its y axis along world +y flipped.
    fov = math.radians(50)
    cam = camera_from_viser_pose((0, 1, 0, 0), (1.0, 2.0, 3.0), fov, 400, 300, max_resolution=4096)
    f = 0.5 * 300 / math.tan(fov / 2)
    # world point = position + (0.5, 0.5, -4): camera coords (0.5, -0.5, 4)
    np.testing.assert_allclose(project(cam, (1.5, 2.5, -1.0)), [200 + f * 0.125, 150 - f * 0.125], atol=1e-3)
    np.testing.assert_allclose(cam.center.numpy(), [1.0, 2.0, 3.0], atol=1e-5)


def test_bridge_caps_resolution_and_keeps_fov():
    fov = 0.9
    cam = camera_from_viser_pose((1, 0, 0, 0), (0, 0, 0), fov, 1920, 1080, max_resolution=480)
    assert (cam.width, cam.height) == (480, 270)
    assert cam.fov_y == pytest.approx(fov, rel=1e-6)
    # the look-at target lands in the image centre from the client handle path too
    handle = viser_camera_at((2.0, -3.0, 1.0), (0.2, 0.1, -0.3), width=800, height=600)
    cam = camera_from_client(handle, max_resolution=400, time=0.25)
    assert (cam.width, cam.height, cam.time) == (400, 300, 0.25)
    np.testing.assert_allclose(project(cam, (0.2, 0.1, -0.3)), [200, 150], atol=1e-3)


def test_bridge_waits_for_a_real_canvas():
    handle = SimpleNamespace(wxyz=(1, 0, 0, 0), position=(0, 0, 0), fov=0.8, image_width=0, image_height=0)
    assert camera_from_client(handle, 512) is None
    assert fit_resolution(100, 50, 1000) == (100, 50)
    with pytest.raises(ValueError):
        fit_resolution(0, 10, 100)


# ----- adaptive resolution ------------------------------------------------------------------------------
def test_adaptive_resolution_shrinks_when_throughput_is_low():
    fast, slow = AdaptiveResolution(frame_budget_s=0.1), AdaptiveResolution(frame_budget_s=0.1)
    fast.record(1920 * 1080, 0.01)  # 200 Mpx/s: full frames fit the budget
    slow.record(100_000, 1.0)  # 0.1 Mpx/s: about 10k pixels per 100 ms
    assert fast.preview_size(1920, 1080) == (1920, 1080)
    w, h = slow.preview_size(1920, 1080)
    assert w < 1920 and h < 1080
    assert w * h <= 10_000 * 1.05
    assert w / h == pytest.approx(1920 / 1080, rel=0.05)
    crawl = AdaptiveResolution(frame_budget_s=0.1, min_side=48)
    crawl.record(10, 1.0)
    assert max(crawl.preview_size(1920, 1080)) == 48


# ----- frame rendering ----------------------------------------------------------------------------------
def test_render_frame_modes_strips_and_composite_depth():
    scene = ball_scene(200)
    cam = camera_from_client(viser_camera_at((2.0, 2.0, 1.2), (0, 0, 0), width=96, height=72), 96)
    whole = render_frame(scene, cam, "RGB", background=(0, 0, 0))
    strips = render_frame(scene, cam, "RGB", background=(0, 0, 0), strips=3)
    assert whole.image.shape == (72, 96, 3) and whole.image.dtype == np.uint8
    # strips shift the principal point, which moves the rasterizer's off-screen Jacobian clamp: ~1% at most
    diff = np.abs(whole.image.astype(int) - strips.image.astype(int))
    assert diff.max() <= 4 and diff.mean() < 0.5
    assert whole.image.std() > 10
    # empty pixels are pushed to viser's far depth so its meshes show through; covered ones carry scene depth
    with torch.no_grad():
        out = render(scene, cam)
    empty = out.alpha[..., 0].numpy() < 0.5
    assert empty.any() and (~empty).any()
    assert np.all(whole.depth[empty] == pytest.approx(VISER_MAX_DEPTH))
    np.testing.assert_allclose(whole.depth[~empty][:, 0], out.depth[..., 0].numpy()[~empty], rtol=1e-5)
    for mode in ("Depth", "Alpha"):
        assert render_frame(scene, cam, mode).image.std() > 10
    calls = []
    with pytest.raises(FrameAborted):
        render_frame(scene, cam, strips=4, should_abort=lambda: calls.append(1) or len(calls) > 1)


# ----- client render loop with a fake client --------------------------------------------------------------
class FakeClient:
    def __init__(self, client_id=1, fail_after=None, **camera):
        self.client_id = client_id
        self.camera = viser_camera_at((2.0, 2.0, 1.2), (0, 0, 0), **camera)
        self.sent = []
        self.fail_after = fail_after
        self.scene = SimpleNamespace(set_background_image=self._set_background_image)

    def _set_background_image(self, image, format="jpeg", jpeg_quality=None, depth=None):
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise ConnectionError("client went away mid-frame")
        assert depth is not None and depth.shape[:2] == image.shape[:2]
        self.sent.append((image.shape, jpeg_quality))


def make_loop(client, scene, settings=ViewSettings(max_resolution=200), **kwargs):
    records, closed = [], []
    lock = threading.RLock()
    loop = ClientRenderLoop(
        client,
        settings=lambda: settings,
        render_context=lambda: (scene, lock),
        on_frame=lambda cid, rec: records.append(rec),
        on_closed=closed.append,
        **kwargs,
    )
    return loop, records, closed


def test_loop_sends_low_res_previews_then_one_full_frame():
    client = FakeClient(width=400, height=300)
    loop, records, _ = make_loop(client, ball_scene(150), frame_budget_s=1e-4, settle_s=0.05)
    loop.start()
    try:
        loop.notify()
        assert poll(lambda: any(r.full_res for r in records), 30), "no full-resolution frame"
        first_full = next(i for i, r in enumerate(records) if r.full_res)
        assert first_full >= 1 and not records[0].full_res
        assert (records[first_full].width, records[first_full].height) == (200, 150)
        assert records[0].width < 200
        assert records[0].jpeg_quality < records[first_full].jpeg_quality
        # a move after settling gives a preview again, sized down because throughput is tiny vs. the budget
        count = len(records)
        client.camera = viser_camera_at((2.5, 1.0, 1.0), (0, 0, 0), width=400, height=300)
        loop.notify()
        assert poll(lambda: len(records) > count, 30)
        assert not records[count].full_res and max(records[count].width, records[count].height) == 48
    finally:
        loop.stop(join_timeout=10)


class InterruptingScene:
    """Wraps a scene; the first full-resolution render triggers a camera move (as a user would)."""

    def __init__(self, base, full_width):
        self.base, self.full_width, self.loop, self.fired = base, full_width, None, False

    def __len__(self):
        return len(self.base)

    def rasterizer_inputs(self, camera, sh_degree=None):
        if camera.width == self.full_width and not self.fired:
            self.fired = True
            self.loop.notify()
        return self.base.rasterizer_inputs(camera, sh_degree)


def test_camera_move_supersedes_full_render():
    client = FakeClient(width=400, height=300)
    scene = InterruptingScene(ball_scene(100), full_width=200)
    loop, records, _ = make_loop(client, scene, settle_s=0.02, frame_budget_s=1e-4)  # previews stay small
    scene.loop = loop
    loop.start()
    try:
        loop.notify()
        assert poll(lambda: scene.fired and any(r.full_res for r in records), 30)
        assert loop.frames_dropped == 1
        # the full frame that was sent is for the newer version: it came after a fresh preview
        full_index = next(i for i, r in enumerate(records) if r.full_res)
        assert sum(not r.full_res for r in records[:full_index]) >= 2
    finally:
        loop.stop(join_timeout=10)


def test_client_disconnecting_mid_frame_only_ends_its_loop():
    bad = FakeClient(client_id=7, fail_after=1, width=160, height=120)
    loop, records, closed = make_loop(bad, ball_scene(80), settle_s=0.02)
    loop.start()
    loop.notify()
    assert poll(lambda: closed == [7], 30), "loop did not close after the send failed"
    assert isinstance(loop.error, ConnectionError)
    assert poll(lambda: not loop.alive, 5)
    loop.notify()  # harmless after the loop ended


class FlakyScene:
    """Fails its first render (like a scene caught mid-update), then behaves."""

    def __init__(self, base):
        self.base, self.calls = base, 0

    def __len__(self):
        return len(self.base)

    def rasterizer_inputs(self, camera, sh_degree=None):
        self.calls += 1
        if self.calls == 1:
            raise ValueError("means contains NaN or Inf")
        return self.base.rasterizer_inputs(camera, sh_degree)


def test_failed_render_is_skipped_and_the_loop_keeps_going():
    client = FakeClient(width=160, height=120)
    loop, records, closed = make_loop(client, FlakyScene(ball_scene(80)), settle_s=0.02)
    loop.start()
    try:
        assert poll(lambda: loop.render_errors == 1, 30), "the first render should have failed"
        assert loop.alive and not records
        loop.notify()  # the next change retries
        assert poll(lambda: any(r.full_res for r in records), 30), "no frame after a failed render"
        assert loop.alive and not closed and loop.render_errors == 1
    finally:
        loop.stop(join_timeout=10)


# ----- CLI ------------------------------------------------------------------------------------------------
def run_cli(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "scripts.view", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_cli_missing_scene_exits_2_without_traceback(tmp_path):
    missing = run_cli("--scene", str(tmp_path / "nope.ply"))
    assert missing.returncode == 2 and "not found" in missing.stderr and "Traceback" not in missing.stderr


def test_cli_bad_scene_files_give_clean_errors(tmp_path, capsys):
    from scripts.view import ViewConfig, main

    bad = tmp_path / "bad.ply"
    bad.write_text("this is not a ply file")
    assert main(ViewConfig(scene=bad, port=0)) == 2
    assert "cannot load scene" in capsys.readouterr().err
    ckpt = tmp_path / "bad.pt"
    torch.save({"not_scene": 1}, ckpt)
    assert main(ViewConfig(scene=ckpt, port=0)) == 2
    assert "no 'scene' entry" in capsys.readouterr().err
    odd = tmp_path / "scene.obj"
    odd.write_text("v 0 0 0")
    assert main(ViewConfig(scene=odd, port=0)) == 2
    assert "unknown scene file type" in capsys.readouterr().err


def test_cli_serves_on_a_free_port_and_stops_on_ctrl_c(tmp_path):
    import select
    import signal
    import urllib.request

    ply = tmp_path / "ball.ply"
    ball_scene(100).save_ply(ply)
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.view", "--scene", str(ply), "--port", "0", "--max-resolution", "64"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url, output, deadline = None, [], time.monotonic() + 60
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                line = proc.stdout.readline()
                output.append(line)
                if line.startswith("splatforge viewer at "):
                    url = line.split()[-1]
        assert url is not None, f"no URL printed: {''.join(output)}"
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ----- browser end to end ---------------------------------------------------------------------------------
def new_clients(server, known):
    return [cid for cid in list(server.frames_sent) if cid not in known]


@pytest.mark.browser
def test_browser_shows_the_scene_and_survives_a_disconnect(browser):
    from viewer import ViewerServer

    server = ViewerServer(ball_scene(300), port=0, max_resolution=128, verbose=False)
    try:
        assert server.port != 0 and server.host == "127.0.0.1"
        page = browser.new_page(viewport={"width": 480, "height": 360})
        page.goto(f"{server.url}/?fixedDpr=1")
        got = server.wait_for_frame(lambda cid, rec: rec.full_res and rec.std > 0.03, timeout=40)
        assert got is not None, f"no non-blank full frame; sent: {dict(server.frames_sent)}"
        cid, record = got
        assert max(record.width, record.height) == 128
        # the browser draws it: the centre of the page is not uniform (away from viser's top-left notice)
        import cv2

        def centre_shows_splats():
            png = page.screenshot()
            img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(int)
            h, w = img.shape[:2]
            centre = img[h // 4 : 3 * h // 4, w // 6 : int(w * 0.42)]  # left of the GUI panel, below the notice
            # viser's own grid and page are grey; the scene's orange-tinted colours are saturated
            saturated = (centre.max(axis=-1) - centre.min(axis=-1)) > 40
            return centre.std() > 8.0 and saturated.mean() > 0.05

        assert poll(centre_shows_splats, 20, interval=0.3), "page centre shows no splats: frame not displayed"

        # closing the tab mid-stream must not take the server down: a new tab still gets frames
        server.guis[cid].mode.value = "Depth"  # keep the loop busy while the tab closes
        page.close()
        assert poll(lambda: cid not in server.sessions, 20), "closed client's loop was not dropped"
        page2 = browser.new_page(viewport={"width": 320, "height": 240})
        page2.goto(f"{server.url}/?fixedDpr=1")
        got2 = server.wait_for_frame(lambda c, rec: c != cid and rec.std > 0.03, timeout=40)
        assert got2 is not None, "server stopped serving after a client disconnected"
        page2.close()
    finally:
        server.stop()


@pytest.mark.browser
def test_browser_time_slider_changes_colours(browser):
    from viewer import ViewerServer

    server = ViewerServer(TimeColoredScene(ball_scene(200)), port=0, max_resolution=96, verbose=False)
    try:
        page = browser.new_page(viewport={"width": 320, "height": 240})
        page.goto(f"{server.url}/?fixedDpr=1")
        got = server.wait_for_frame(lambda cid, rec: rec.full_res and rec.std > 0.02, timeout=40)
        assert got is not None
        cid, first = got
        assert first.scene_time == pytest.approx(0.0)
        r0, _, b0 = first.mean_rgb
        assert b0 > r0 + 0.02  # blue at t = 0
        seq = server.frames_sent[cid][-1].seq
        server.guis[cid].time_slider.value = 1.0
        got = server.wait_for_frame(lambda c, rec: c == cid and rec.full_res, timeout=40, after_seq={cid: seq})
        assert got is not None, "no frame after moving the time slider"
        later = got[1]
        assert later.scene_time == pytest.approx(1.0)
        r1, _, b1 = later.mean_rgb
        assert r1 > b1 + 0.02 and r1 > r0 + 0.02  # red at t = 1
        # play advances (and loops) the time without any camera move
        gui = server.guis[cid]
        gui.speed.value = 1.0
        seq = server.frames_sent[cid][-1].seq
        gui.playing.value = True
        got = server.wait_for_frame(
            lambda c, rec: c == cid and rec.scene_time is not None and rec.scene_time < 0.9,
            timeout=30,
            after_seq={cid: seq},
        )
        gui.playing.value = False
        assert got is not None, "playing did not move the time"
        page.close()
    finally:
        server.stop()


@pytest.mark.browser
def test_browser_dropdown_slider_and_a_burst_of_camera_moves(browser):
    """Controls used in the page reach the server; dragging the view gives low-res frames, then one full frame."""
    from viewer import ViewerServer

    # A 2 ms frame budget forces previews below full size however fast this machine renders.
    server = ViewerServer(TimeColoredScene(ball_scene(200)), port=0, max_resolution=160, frame_budget_s=0.002, verbose=False)
    try:
        page = browser.new_page(viewport={"width": 640, "height": 480})
        page.goto(f"{server.url}/?fixedDpr=1")
        got = server.wait_for_frame(lambda cid, rec: rec.full_res, timeout=40)
        assert got is not None, "no full frame"
        cid = got[0]
        gui = server.guis[cid]

        # Dropdown: pick "Depth" in the page's Mode select.
        page.locator("input[role=combobox][value=RGB]").click()
        page.get_by_role("option", name="Depth", exact=True).click()
        assert poll(lambda: gui.mode.value == "Depth", 20), f"mode stayed {gui.mode.value}"
        assert server.wait_for_frame(lambda c, rec: c == cid and rec.mode == "Depth", timeout=30) is not None

        # Slider: focus the time slider's thumb and press End (to its maximum).
        thumbs = page.get_by_role("slider")
        time_thumb = next(
            thumbs.nth(i) for i in range(thumbs.count()) if thumbs.nth(i).get_attribute("aria-valuemax") in ("1", "1.0")
        )
        time_thumb.focus()
        page.keyboard.press("End")
        assert poll(lambda: gui.time_slider.value == pytest.approx(1.0), 20), f"time stayed {gui.time_slider.value}"

        # A burst of camera drags: previews below full resolution, then one full-resolution frame.
        settled = server.wait_for_frame(lambda c, rec: c == cid and rec.full_res, timeout=30)
        seq = settled[1].seq
        full_size = (settled[1].width, settled[1].height)
        for i in range(6):
            page.mouse.move(120, 300)
            page.mouse.down()
            page.mouse.move(120 + 25 * (i % 2 * 2 - 1), 300, steps=4)
            page.mouse.up()
        preview = server.wait_for_frame(lambda c, rec: c == cid and not rec.full_res, timeout=30, after_seq={cid: seq})
        assert preview is not None, "camera moves produced no preview frame"
        assert preview[1].width * preview[1].height < full_size[0] * full_size[1]
        final = server.wait_for_frame(
            lambda c, rec: c == cid and rec.full_res, timeout=30, after_seq={cid: preview[1].seq}
        )
        assert final is not None, "no full-resolution frame after the camera stopped"
        assert (final[1].width, final[1].height) == full_size
        page.close()
    finally:
        server.stop()


def red_then_blue_4d_scene(n: int = 200):
    """A real Gaussian4DScene: a red ball that exists around t = 0 and a blue one around t = 1 (same place)."""
    from scenes import Gaussian4DScene
    from scenes.gaussian_scene import rgb_to_sh_dc

    ball = ball_scene(n)
    params = {}
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh_rest"):
        params[name] = torch.cat([ball.params[name].detach()] * 2)
    red, blue = torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.1, 0.9])
    params["sh_dc"] = torch.cat([rgb_to_sh_dc(red).expand(n, 1, 3), rgb_to_sh_dc(blue).expand(n, 1, 3)])
    params["sh_rest"] = torch.zeros_like(params["sh_rest"])
    params["times"] = torch.cat([torch.zeros(n, 1), torch.ones(n, 1)])
    params["log_scale_t"] = torch.full((2 * n, 1), math.log(0.1))  # invisible 0.5 away in time
    params["quats_r"] = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(2 * n, 4).clone()
    return Gaussian4DScene(params, sh_degree=ball.sh_degree, time_range=(0.0, 1.0))


@pytest.mark.browser
def test_browser_time_slider_drives_a_real_4d_scene(browser):
    """The slider re-slices a Gaussian4DScene: red primitives at t = 0 give way to blue ones at t = 1."""
    from viewer import ViewerServer

    server = ViewerServer(red_then_blue_4d_scene(), port=0, max_resolution=96, verbose=False)
    try:
        page = browser.new_page(viewport={"width": 320, "height": 240})
        page.goto(f"{server.url}/?fixedDpr=1")
        got = server.wait_for_frame(lambda cid, rec: rec.full_res and rec.std > 0.02, timeout=40)
        assert got is not None
        cid, first = got
        r0, _, b0 = first.mean_rgb
        seq = server.frames_sent[cid][-1].seq
        server.guis[cid].time_slider.value = 1.0
        got = server.wait_for_frame(lambda c, rec: c == cid and rec.full_res, timeout=40, after_seq={cid: seq})
        assert got is not None, "no frame after moving the time slider"
        r1, _, b1 = got[1].mean_rgb
        assert got[1].scene_time == pytest.approx(1.0)
        assert r0 > b0 + 0.02, (r0, b0)  # the red primitives at t = 0
        assert b1 > r1 + 0.02, (r1, b1)  # the blue ones at t = 1
        page.close()
    finally:
        server.stop()
