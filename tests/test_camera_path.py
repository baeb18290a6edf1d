"""Camera paths: spline interpolation, nerfstudio camera_path.json I/O, sf-render --mode camera-path, viewer panel."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from render import Camera
from render.camera_path import (
    CameraPath,
    CameraPathError,
    Keyframe,
    load_camera_path,
    quat_log,
    quat_mul,
    quat_conj,
    save_camera_path,
)
from render.conventions import look_at_w2c, wxyz_to_rotation_matrix
from scenes import GaussianScene
from browser_support import poll


def kf_look_at(eye, target=(0.0, 0.0, 0.0), fov=0.8, time=None) -> Keyframe:
    return Keyframe.from_camera(Camera.from_fov(look_at_w2c(eye, target), fov, 64, 48, time=time))


def square_path(loop=False, smoothness=0.5, timed=False) -> CameraPath:
    eyes = [(3.0, 0.0, 1.0), (0.5, 3.0, 1.8), (-3.0, 0.2, 0.6), (0.0, -2.5, 1.2)]
    kfs = [kf_look_at(e, fov=0.7 + 0.1 * i, time=(0.3 * i if timed else None)) for i, e in enumerate(eyes)]
    return CameraPath(kfs, fps=10, seconds=3.0, loop=loop, smoothness=smoothness, width=48, height=32)


def rot_angle(a, b) -> float:
    return 2.0 * float(np.linalg.norm(quat_log(quat_mul(quat_conj(np.asarray(a)), np.asarray(b)))))


# ----- interpolation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("loop", [False, True])
def test_path_passes_through_keyframes_at_their_times(loop):
    path = square_path(loop=loop, timed=True)
    times = path.keyframe_times()
    assert times[0] == 0.0 and times[-1] == pytest.approx(3.0 * (3 / 4 if loop else 1.0))
    for t, k in zip(times, path.keyframes):
        s = path.sample(t)
        np.testing.assert_allclose(s.position, k.position, atol=1e-9)
        assert rot_angle(s.wxyz, k.wxyz) < 1e-7
        assert s.fov_y == pytest.approx(k.fov_y, abs=1e-9) and s.time == pytest.approx(k.time, abs=1e-9)
    # between keyframes the path really moves off the straight line (it is a curve, not a polyline)
    mid = path.sample(0.5 * (times[0] + times[1])).position
    a, b = np.array(path.keyframes[0].position), np.array(path.keyframes[1].position)
    assert np.linalg.norm(mid - 0.5 * (a + b)) > 1e-2
    # sampled frames: first on keyframe 0; the last on the last keyframe unless looping
    cams = path.cameras()
    assert len(cams) == 30 and (cams[0].width, cams[0].height) == (48, 32)
    np.testing.assert_allclose(cams[0].center.numpy(), path.keyframes[0].position, atol=1e-5)
    end = path.keyframes[0] if loop else path.keyframes[-1]
    last = path.sample(path.seconds).position
    np.testing.assert_allclose(last, end.position, atol=1e-9)


@pytest.mark.parametrize("loop", [False, True])
def test_path_is_c1_at_keyframes(loop):
    path = square_path(loop=loop, timed=True)
    h = 1e-5
    knots = path.keyframe_times()[1:] + [path.seconds] if loop else path.keyframe_times()[1:-1]
    for t in knots:
        before, at, after = path.sample(t - h), path.sample(t), path.sample(t + h)
        v_minus, v_plus = (at.position - before.position) / h, (after.position - at.position) / h
        speed = np.linalg.norm(v_plus)
        assert speed > 0.1
        assert np.linalg.norm(v_plus - v_minus) < 1e-3 * speed, f"position kink at t={t}"
        w_minus = 2 * quat_log(quat_mul(quat_conj(before.wxyz), at.wxyz)) / h
        w_plus = 2 * quat_log(quat_mul(quat_conj(at.wxyz), after.wxyz)) / h
        assert np.linalg.norm(w_plus) > 0.05
        assert np.linalg.norm(w_plus - w_minus) < 1e-3 * np.linalg.norm(w_plus), f"rotation kink at t={t}"
        f_minus, f_plus = (at.fov_y - before.fov_y) / h, (after.fov_y - at.fov_y) / h
        assert abs(f_plus - f_minus) < 1e-3 * max(abs(f_plus), 1e-2)
    # and no jumps anywhere: finite differences of position along the whole path change gradually
    ts = np.linspace(0.0, path.seconds, 3001)
    pos = np.stack([path.sample(t).position for t in ts])
    vel = np.diff(pos, axis=0) / (ts[1] - ts[0])
    jumps = np.linalg.norm(np.diff(vel, axis=0), axis=1)
    assert jumps.max() < 0.05 * np.linalg.norm(vel, axis=1).max()


def test_zero_smoothness_stops_at_keyframes():
    path = square_path(smoothness=0.0)
    t = path.keyframe_times()[1]
    h = 1e-4
    v = (path.sample(t + h).position - path.sample(t).position) / h
    assert np.linalg.norm(v) < 1e-2  # tension 1: zero tangents (ease in/out)


def test_quaternions_stay_unit_and_take_the_short_way():
    def about_z(deg):
        a = math.radians(deg) / 2
        return (math.cos(a), 0.0, 0.0, math.sin(a))

    pos = (0.0, 0.0, 0.0)
    # the second keyframe is given as -q (w < 0): the same rotation; the path must not go the long way round
    q1 = tuple(-x for x in about_z(160.0))
    path = CameraPath([Keyframe(about_z(0.0), pos, 0.8), Keyframe(q1, pos, 0.8)], fps=50, seconds=1.0)
    angles = []
    for t in np.linspace(0, 1, 51):
        s = path.sample(t)
        assert np.linalg.norm(s.wxyz) == pytest.approx(1.0, abs=1e-12)
        r = wxyz_to_rotation_matrix(s.wxyz)
        assert abs(r[2, 2] - 1.0) < 1e-9  # stays a rotation about z
        angles.append(math.degrees(math.atan2(r[1, 0], r[0, 0])))
    assert angles[25] == pytest.approx(80.0, abs=1e-6)  # symmetric: half way is half the angle
    assert np.all(np.diff(angles) > 0) and max(angles) <= 160.0 + 1e-6  # never via -200 degrees
    # several keyframes with alternating signs still interpolate smoothly and stay unit
    kfs = [Keyframe(tuple((-1) ** i * np.array(about_z(50.0 * i))), (i, 0.0, 0.0), 0.8) for i in range(5)]
    path = CameraPath(kfs, fps=20, seconds=2.0)
    steps = [rot_angle(path.sample(t).wxyz, path.sample(t + 0.01).wxyz) for t in np.linspace(0, 1.99, 100)]
    assert max(steps) < math.radians(5.0)
    for k in path.samples():
        assert np.linalg.norm(k.wxyz) == pytest.approx(1.0, abs=1e-12)


def test_single_keyframe_and_bad_paths():
    k = kf_look_at((2.0, 1.0, 1.0))
    path = CameraPath([k], fps=4, seconds=1.0, width=20, height=10)
    cams = path.cameras()
    assert len(cams) == 4 and all(torch.allclose(c.world_to_camera, cams[0].world_to_camera) for c in cams)
    with pytest.raises(ValueError, match="no keyframes"):
        CameraPath([], fps=4, seconds=1.0).cameras()
    with pytest.raises(ValueError, match="fps"):
        CameraPath([k], fps=0)
    with pytest.raises(ValueError, match="time"):
        CameraPath([k, kf_look_at((1.0, 2.0, 1.0), time=0.5)])
    with pytest.raises(ValueError, match="fov"):
        Keyframe((1, 0, 0, 0), (0, 0, 0), 0.0)


# ----- files --------------------------------------------------------------------------------------------
def assert_same_cameras(a, b, tol=1e-6):
    assert len(a) == len(b)
    for ca, cb in zip(a, b):
        assert torch.allclose(ca.world_to_camera, cb.world_to_camera, atol=tol, rtol=0)
        assert (ca.width, ca.height) == (cb.width, cb.height)
        assert ca.fy == pytest.approx(cb.fy, rel=tol) and ca.cx == pytest.approx(cb.cx, rel=tol)
        assert (ca.time is None and cb.time is None) or ca.time == pytest.approx(cb.time, abs=tol)


@pytest.mark.parametrize("loop", [False, True])
def test_json_round_trip(tmp_path, loop):
    path = square_path(loop=loop, smoothness=0.7, timed=True)
    file = save_camera_path(tmp_path / "sub" / "camera_path.json", path)
    data = json.loads(file.read_text())
    assert data["camera_type"] == "perspective" and data["is_cycle"] is loop
    assert (data["render_width"], data["render_height"], data["fps"], data["seconds"]) == (48, 32, 10, 3.0)
    assert len(data["keyframes"]) == 4 and len(data["keyframes"][0]["matrix"]) == 16
    assert len(data["camera_path"]) == 30 and len(data["camera_path"][0]["camera_to_world"]) == 16
    assert data["camera_path"][0]["fov"] == pytest.approx(math.degrees(path.keyframes[0].fov_y))
    assert not list(file.parent.glob(".*"))  # no temporary files left behind

    loaded = load_camera_path(file)
    assert (loaded.fps, loaded.seconds, loaded.loop, loaded.smoothness) == (10, 3.0, loop, 0.7)
    assert (loaded.width, loaded.height) == (48, 32)
    for a, b in zip(loaded.keyframes, path.keyframes):
        np.testing.assert_allclose(a.opencv_c2w, b.opencv_c2w, atol=1e-6)
        assert a.fov_y == pytest.approx(b.fov_y, abs=1e-6) and a.time == pytest.approx(b.time, abs=1e-6)
    assert_same_cameras(loaded.cameras(), path.cameras())  # from the stored sampled frames
    assert_same_cameras(loaded.with_keyframes(loaded.keyframes).cameras(), path.cameras())  # re-interpolated


def gl_project(c2w_gl: np.ndarray, fov_deg: float, width: int, height: int, point) -> np.ndarray:
    """Pixel of a world point for a three.js / nerfstudio camera (looks down -z, +y up, vertical fov)."""
    p = np.linalg.inv(c2w_gl) @ np.array([*point, 1.0])
    assert p[2] < 0, "the test point must be in front of the nerfstudio camera"
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    return np.array([width / 2 + f * p[0] / -p[2], height / 2 - f * p[1] / -p[2]])


def our_project(camera: Camera, point) -> np.ndarray:
    p = camera.world_to_camera.double() @ torch.tensor([*point, 1.0], dtype=torch.float64)
    assert p[2] > 0, "the point must be in front of our camera too"
    uv = camera.K.double() @ p[:3]
    return (uv[:2] / uv[2]).numpy()


def test_hand_written_nerfstudio_file_matches_its_opengl_cameras(tmp_path):
    c = math.sqrt(0.5)
    c2ws = [
        np.array([[1, 0, 0, 0.0], [0, 1, 0, 0.0], [0, 0, 1, 5.0], [0, 0, 0, 1]]),  # at +z looking at the origin
        np.array([[0, 0, 1, 5.0], [0, 1, 0, 0.0], [-1, 0, 0, 0.0], [0, 0, 0, 1]]),  # at +x, turned 90 deg about y
        np.array([[c, -c, 0, 1.0], [c, c, 0, 2.0], [0, 0, 1, 6.0], [0, 0, 0, 1]]),  # rolled 45 deg
    ]
    fovs = [60.0, 45.0, 50.0]
    doc = {
        "camera_type": "perspective",
        "render_height": 100,
        "render_width": 200,
        "fps": 24,
        "seconds": 0.125,
        "smoothness_value": 0.5,
        "is_cycle": False,
        "keyframes": [
            {"matrix": c2ws[0].reshape(-1).tolist(), "fov": 60.0, "aspect": 2.0},
            {"matrix": c2ws[2].reshape(-1).tolist(), "fov": 50.0, "aspect": 2.0},
        ],
        "camera_path": [
            {"camera_to_world": m.reshape(-1).tolist(), "fov": f, "aspect": 2.0} for m, f in zip(c2ws, fovs)
        ],
    }
    file = tmp_path / "ns_camera_path.json"
    file.write_text(json.dumps(doc))
    path = load_camera_path(file)
    assert len(path.keyframes) == 2 and path.num_frames == 3 and path.fps == 24
    cams = path.cameras()
    assert len(cams) == 3 and (cams[0].width, cams[0].height) == (200, 100)
    points = [(0.5, 0.25, 0.0), (0.0, 0.3, -0.6), (1.3, 2.1, 1.0)]
    for cam, m, f, point in zip(cams, c2ws, fovs, points):
        np.testing.assert_allclose(our_project(cam, point), gl_project(m, f, 200, 100, point), atol=1e-3)
        assert cam.fov_y == pytest.approx(math.radians(f), rel=1e-6)
        np.testing.assert_allclose(cam.center.numpy(), m[:3, 3], atol=1e-5)
    # the first camera, spelled out: (0.5, 0.25, 0) is right of and above the image centre
    f0 = 50 / math.tan(math.radians(30))
    np.testing.assert_allclose(our_project(cams[0], points[0]), [100 + f0 * 0.1, 50 - f0 * 0.05], atol=1e-3)
    # a file with keyframes only is interpolated (nerfstudio's three.js viewer wrote matrices as strings)
    del doc["camera_path"]
    doc["keyframes"][0]["matrix"] = json.dumps(doc["keyframes"][0]["matrix"])
    file.write_text(json.dumps(doc))
    only_keys = load_camera_path(file)
    assert only_keys.frames is None and only_keys.num_frames == 3
    np.testing.assert_allclose(only_keys.cameras()[0].center.numpy(), [0, 0, 5], atol=1e-5)
    np.testing.assert_allclose(only_keys.cameras()[-1].center.numpy(), [1, 2, 6], atol=1e-5)


def good_doc():
    m = np.eye(4)
    m[2, 3] = 4.0
    return {
        "render_height": 32,
        "render_width": 48,
        "fps": 4,
        "seconds": 1,
        "keyframes": [{"matrix": m.reshape(-1).tolist(), "fov": 50.0, "aspect": 1.5}],
        "camera_path": [{"camera_to_world": m.reshape(-1).tolist(), "fov": 50.0, "aspect": 1.5}],
    }


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d.pop("render_height"), "render_height"),
        (lambda d: d["camera_path"][0]["camera_to_world"].pop(), "camera_path[0].camera_to_world: expected 16"),
        (lambda d: d["keyframes"][0].update(fov=-10.0), "keyframes[0]: 'fov' must be positive"),
        (lambda d: d["camera_path"][0]["camera_to_world"].__setitem__(5, float("nan")), "camera_path[0].camera_to_world: contains NaN"),
        (lambda d: d["camera_path"][0].pop("fov"), "camera_path[0]: missing key 'fov'"),
        (lambda d: d.update(fps="fast"), "'fps' must be a number"),
        (lambda d: d.update(keyframes=[], camera_path=[]), "'keyframes' or 'camera_path'"),
        (lambda d: d["keyframes"][0]["matrix"].__setitem__(0, 0.0), "keyframes[0].matrix"),
    ],
)
def test_malformed_files_name_the_file_and_field(tmp_path, mutate, fragment):
    doc = good_doc()
    mutate(doc)
    file = tmp_path / "broken_path.json"
    file.write_text(json.dumps(doc))  # NaN is written as the NaN token, as Python's json does
    with pytest.raises(CameraPathError) as info:
        load_camera_path(file)
    assert str(file) in str(info.value) and fragment in str(info.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_camera_path(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CameraPathError, match="bad.json: not valid JSON"):
        load_camera_path(bad)
    load_camera_path_ok = tmp_path / "ok.json"
    load_camera_path_ok.write_text(json.dumps(good_doc()))
    assert load_camera_path(load_camera_path_ok).num_frames == 1


# ----- sf-render --mode camera-path ---------------------------------------------------------------------
def tiny_scene(n=150, seed=0) -> GaussianScene:
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3)) * 0.3
    colors = np.clip(rng.random((n, 3)) * 0.6 + 0.3, 0, 1)
    return GaussianScene.from_points(pts, colors, sh_degree=0, initial_opacity=0.9, scale_multiplier=1.5)


def test_sf_render_camera_path_writes_frames_and_video(tmp_path):
    import imageio.v2 as imageio

    from scripts.render_cli import RenderConfig, render_scene

    ply = tmp_path / "scene.ply"
    tiny_scene().save_ply(ply)
    path = CameraPath(
        [kf_look_at((2.0, 0.0, 0.5)), kf_look_at((0.0, 2.0, 0.8)), kf_look_at((-2.0, 0.3, 0.4))],
        fps=8, seconds=1.0, width=40, height=30,
    )
    file = save_camera_path(tmp_path / "camera_path.json", path)
    out = tmp_path / "render"
    count = render_scene(RenderConfig(scene=ply, mode="camera-path", camera_path=file, output=out, backend="cpu"))
    pngs = sorted(out.glob("frame_*.png"))
    assert count == 8 and len(pngs) == 8
    images = [imageio.imread(p) for p in pngs]
    assert images[0].shape == (30, 40, 3) and images[0].std() > 5
    assert np.abs(images[0].astype(int) - images[-1].astype(int)).mean() > 1  # the camera moved
    frames = imageio.mimread(out / "camera_path.mp4")
    assert len(frames) == 8
    with pytest.raises(ValueError, match="--camera-path"):
        render_scene(RenderConfig(scene=ply, mode="camera-path", output=out))
    with pytest.raises(ValueError, match="--data"):
        render_scene(RenderConfig(scene=ply, mode="orbit", output=out))


# ----- viewer panel in a real browser -------------------------------------------------------------------
@pytest.mark.browser
def test_browser_adds_keyframes_and_saves(browser, tmp_path):
    from viewer import ViewerServer

    server = ViewerServer(tiny_scene(100), port=0, max_resolution=64, verbose=False)
    try:
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(f"{server.url}/?fixedDpr=1")
        assert server.wait_for_frame(timeout=40) is not None, "no frame from the viewer"
        cid = next(iter(server.camera_paths))
        panel = server.camera_paths[cid]
        client = server.viser.get_clients()[cid]
        page.get_by_text("Camera path", exact=True).click()  # expand the folder
        add = page.get_by_role("button", name="Add keyframe")
        add.click()
        assert poll(lambda: len(panel.keyframes) == 1, 10), "the click did not reach the server"
        first = panel.keyframes[0]
        np.testing.assert_allclose(first.position, client.camera.position, atol=1e-6)
        assert first.fov_y == pytest.approx(client.camera.fov, rel=1e-6)
        client.camera.position = np.asarray(client.camera.position) + np.array([0.5, -0.3, 0.2])
        assert poll(lambda: np.linalg.norm(np.asarray(client.camera.position) - first.position) > 0.1, 10)
        add.click()
        assert poll(lambda: len(panel.keyframes) == 2, 10), "second keyframe did not reach the server"
        assert np.linalg.norm(np.subtract(panel.keyframes[1].position, first.position)) > 0.1
        assert len(panel._frustums) == 2 and panel._spline is not None

        target = tmp_path / "from_browser.json"
        panel.file.value = str(target)
        page.get_by_role("button", name="Save").click()
        assert poll(target.exists, 10), f"save did not write the file: {panel.status.content}"
        saved = load_camera_path(target)
        assert len(saved.keyframes) == 2 and saved.num_frames == panel.path.num_frames
        for a, b in zip(saved.keyframes, panel.keyframes):
            np.testing.assert_allclose(a.opencv_c2w, b.opencv_c2w, atol=1e-6)

        # select (as a frustum click does) and "Go to" moves the client's camera back to keyframe 1
        panel.select(panel._entries[0][0])
        page.get_by_role("button", name="Go to").click()
        assert poll(lambda: np.linalg.norm(np.asarray(client.camera.position) - first.position) < 1e-4, 10)
        page.get_by_role("button", name="Delete").click()
        assert poll(lambda: len(panel.keyframes) == 1, 10)
        panel.load(str(target))
        assert len(panel.keyframes) == 2
        # scrubbing to the start and previewing (to the end of a short path) move the client's camera
        panel.scrub.value = 0.5
        panel.scrub.value = 0.0
        assert poll(lambda: np.linalg.norm(np.asarray(client.camera.position) - first.position) < 1e-4, 10)
        panel.seconds.value = 0.5
        page.get_by_role("button", name="Preview").click()
        end = np.asarray(panel.keyframes[1].position)
        assert poll(lambda: np.linalg.norm(np.asarray(client.camera.position) - end) < 1e-4, 10), "preview did not play"
        page.close()
    finally:
        server.stop()
