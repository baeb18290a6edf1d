"""Gaussian4DScene: the 4D rotation, the slice against a brute-force conditional, gradients, files, rendering."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cuda_rasterizer.reference import quat_to_rotmat
from render import Camera, render
from scenes import Gaussian4DScene, GaussianScene, load_scene
from scenes.editing import SplatEditor
from scenes.rotation4d import covariance4, quat_multiply, rotation4, spatial_pair


def random_scene4(n: int = 20, degree: int = 1, seed: int = 0) -> Gaussian4DScene:
    gen = torch.Generator().manual_seed(seed)
    params = {
        "means": torch.randn(n, 3, generator=gen),
        "times": torch.rand(n, 1, generator=gen),
        "quats": torch.randn(n, 4, generator=gen),
        "quats_r": torch.randn(n, 4, generator=gen),
        "log_scales": torch.randn(n, 3, generator=gen) * 0.5 - 1.0,
        "log_scale_t": torch.randn(n, 1, generator=gen) * 0.3 - 1.0,
        "opacity_logits": torch.randn(n, generator=gen),
        "sh_dc": torch.randn(n, 1, 3, generator=gen),
        "sh_rest": torch.randn(n, (degree + 1) ** 2 - 1, 3, generator=gen),
    }
    return Gaussian4DScene(params, sh_degree=degree, time_range=(0.0, 1.0))


def xt_rotor(angle: float) -> tuple:
    """The quaternion pair of a rotation by `angle` in the x-t plane (leaves y and z alone)."""
    q = torch.tensor([math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0])
    return q, q.clone()


def test_rotation4_is_orthonormal_with_det_one():
    gen = torch.Generator().manual_seed(1)
    ql = torch.randn(200, 4, generator=gen, dtype=torch.float64)
    qr = torch.randn(200, 4, generator=gen, dtype=torch.float64)
    r = rotation4(ql, qr)
    eye = torch.eye(4, dtype=torch.float64)
    assert torch.allclose(r @ r.transpose(-1, -2), eye.expand_as(r), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(200, dtype=torch.float64), atol=1e-12)
    # not just a spatial rotation: time mixes with space for generic pairs
    assert r[:, 3, :3].abs().max() > 0.5


def test_spatial_pair_equals_3d_quaternion_rotation_and_composes():
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    r = rotation4(*spatial_pair(q))
    assert torch.allclose(r[:, :3, :3], quat_to_rotmat(q), atol=1e-12)
    assert torch.allclose(r[:, 3], torch.tensor([0.0, 0, 0, 1], dtype=torch.float64).expand(50, 4), atol=1e-12)
    assert torch.allclose(r[:, :3, 3], torch.zeros(50, 3, dtype=torch.float64), atol=1e-12)
    # (a_l, a_r) after (b_l, b_r) is (a_l b_l, b_r a_r)
    al, ar, bl, br = (torch.randn(50, 4, generator=gen, dtype=torch.float64) for _ in range(4))
    al, ar, bl, br = (torch.nn.functional.normalize(x, dim=-1) for x in (al, ar, bl, br))
    composed = rotation4(quat_multiply(al, bl), quat_multiply(br, ar))
    assert torch.allclose(composed, rotation4(al, ar) @ rotation4(bl, br), atol=1e-12)


def test_xt_rotor_moves_along_x():
    ql, qr = xt_rotor(0.4)
    r = rotation4(ql[None].double(), qr[None].double())[0]
    assert torch.allclose(r[1:3, 1:3], torch.eye(2, dtype=torch.float64))
    assert abs(float(r[0, 3])) > 0.3  # x and t mix


@pytest.mark.parametrize("time_filter", [0.0, 0.3])
@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("t", [0.0, 0.37, 1.3])
def test_slice_matches_brute_force_conditional(t, native, time_filter):
    """Torch slice (native False) and the native sf_math.h kernel (CPU, float64) against the 4D density; with a
    temporal filter, against the density of Sigma4 + f^2 e_t e_t^T."""
    scene = random_scene4(n=12, seed=3).double()
    scene.native_slice = native
    scene.time_filter = time_filter
    with torch.no_grad():
        means4, cov4, base = scene.gaussians4()
        if time_filter:  # gaussians4 includes the filter: check that against the unfiltered 4D covariance
            plain = covariance4(scene.params["quats"], scene.params["quats_r"], scene.scales4)
            assert torch.allclose(cov4 - plain, torch.diag(plain.new_tensor([0, 0, 0, time_filter ** 2])).expand_as(plain))
        sliced = scene.slice(t)
    gen = torch.Generator().manual_seed(4)
    for i in range(len(scene)):
        # points around the sliced mean, spread by the 3D covariance
        chol = torch.linalg.cholesky(cov4[i, :3, :3])
        x = sliced["means"][i] + (chol @ torch.randn(3, 64, generator=gen, dtype=torch.float64)).T * 1.5
        d4 = torch.cat([x - means4[i, :3], torch.full((64, 1), t - float(means4[i, 3]), dtype=torch.float64)], dim=1)
        density4 = base[i] * torch.exp(-0.5 * (d4 @ torch.linalg.inv(cov4[i]) * d4).sum(-1))
        d3 = x - sliced["means"][i]
        density3 = sliced["opacities"][i] * torch.exp(-0.5 * (d3 @ torch.linalg.inv(sliced["covars"][i]) * d3).sum(-1))
        assert torch.allclose(density3, density4, rtol=1e-9, atol=1e-300), i
    # the conditional covariance is symmetric positive definite
    assert torch.linalg.eigvalsh(sliced["covars"]).min() > 0


@pytest.mark.parametrize("time_filter", [0.0, 0.2])
@pytest.mark.parametrize("native", [False, True])
def test_slice_gradients_match_finite_differences(native, time_filter):
    """Torch autograd through the slice, and the native kernel's VJP (sf_math.h slice4_vjp), in float64."""
    scene = random_scene4(n=3, seed=5).double()
    scene.native_slice = native
    scene.time_filter = time_filter
    names = ("means", "times", "quats", "quats_r", "log_scales", "log_scale_t", "opacity_logits")

    class SliceAt(torch.nn.Module):
        def __init__(self, scene):
            super().__init__()
            self.scene = scene

        def forward(self, t):
            out = self.scene.slice(t)
            return out["means"], out["covars"], out["opacities"]

    wrapper = SliceAt(scene)
    inputs = tuple(scene.params[n].detach().clone().requires_grad_(True) for n in names)

    def fn(*tensors):
        return torch.func.functional_call(wrapper, {f"scene.params.{n}": v for n, v in zip(names, tensors)}, (0.6,))

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("time_filter", [0.0, 0.1])
def test_native_cpu_slice_matches_torch_slice_in_float32(time_filter):
    scene = random_scene4(n=2000, seed=14)
    scene.time_filter = time_filter
    with torch.no_grad():
        scene.native_slice = False
        want = scene._slice_terms(0.42)
        scene.native_slice = True
        got = scene._slice_terms(0.42)
    for a, b, name in zip(got, want, ("means", "covars", "opacities", "exponent")):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("time_filter", [0.0, 0.1])
def test_native_cpu_slice_and_vjp_match_torch_in_float32_with_a_partial_lane_block(time_filter):
    """The CPU kernels run SF_LANES primitives per call on AVX-512 / AVX2 hosts (cpu/lanes.h): 1003 rows leave a
    partial last block. Values and the VJP (a random linear loss on every output) against the torch slice in float64."""
    from scenes.gaussian4d_scene import _native_slice_available

    if not _native_slice_available("cpu"):
        pytest.skip("the CPU extension is not built")
    scene = random_scene4(n=1003, seed=15)
    scene.time_filter = time_filter
    gen = torch.Generator().manual_seed(3)
    weights = [torch.randn(1003, 3, generator=gen), torch.randn(1003, 3, 3, generator=gen), torch.randn(1003, generator=gen)]
    names = ("means", "times", "quats", "quats_r", "log_scales", "log_scale_t", "opacity_logits")

    def outputs_and_grads(native: bool, dtype: torch.dtype):
        scene.native_slice = native
        scene.to(dtype)
        for p in scene.params.values():
            p.grad = None
        terms = scene._slice_terms(0.37)
        loss = sum((out * w.to(dtype)).sum() for out, w in zip(terms[:3], weights))
        loss.backward()
        result = [t.detach().double() for t in terms] + [scene.params[k].grad.double() for k in names]
        scene.to(torch.float32)
        return result

    want = outputs_and_grads(False, torch.float64)
    got = outputs_and_grads(True, torch.float32)
    for a, b, name in zip(got, want, ("means3", "covars3", "opacities", "exponent") + names):
        scale = float(b.abs().max())
        assert float((a - b).abs().max()) <= 2e-4 * scale + 1e-6, name


def test_conditional_cache_reused_until_parameters_change_and_autograd_still_works():
    scene = random_scene4(n=10, seed=6)
    with torch.no_grad():
        first = scene.conditional()
        assert scene.conditional()[0] is first[0]  # reused across frames
        scene.params["log_scales"].add_(0.1)  # an optimiser-style in-place update bumps the version
        second = scene.conditional()
    assert second[0] is not first[0] and not torch.allclose(second[0], first[0])
    # with autograd recording, every call builds its own graph (two backward passes both succeed)
    for _ in range(2):
        loss = sum(v.sum() for v in scene.slice(0.5).values())
        loss.backward()
    assert scene.params["quats_r"].grad is not None and torch.isfinite(scene.params["quats_r"].grad).all()


def test_rasterizer_inputs_cull_in_time_and_respect_editor_hiding():
    scene = random_scene4(n=30, seed=7)
    with torch.no_grad():
        scene.params["log_scale_t"].fill_(math.log(0.05))
        scene.params["times"][:15] = 0.0
        scene.params["times"][15:] = 1.0
    cam = Camera(torch.eye(4), 50.0, 50.0, 16.0, 16.0, 32, 32, time=0.0)
    inputs = scene.rasterizer_inputs(cam)
    # everything at time 1 is 0.5 (1 / 0.05)^2 = 200 >> 16 away: culled, whatever its rotation
    _, sigma3, _ = scene.conditional()
    stt = scene.gaussians4()[1][:, 3, 3]
    expect = int((0.5 * (0.0 - scene.params["times"][:, 0]) ** 2 / stt <= 16).sum())
    assert inputs["means"].shape[0] == expect < 30
    assert inputs["covars"].shape == (expect, 3, 3) and inputs["quats"] is None and inputs["scales"] is None
    assert inputs["colors"].shape[0] == expect and inputs["opacities"].shape == (expect,)
    editor = SplatEditor(scene)
    editor.hide(torch.arange(30) < 5)
    hidden = scene.rasterizer_inputs(cam)
    assert hidden["means"].shape[0] == expect - 5
    editor.detach()


def test_editor_rigid_transform_rotates_space_time_rotation():
    scene = random_scene4(n=8, seed=8).double()
    before_cov = scene.gaussians4()[1].detach().clone()
    editor = SplatEditor(scene)
    angle = 0.7
    rot = torch.tensor([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]],
                       dtype=torch.float64)
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[:3, :3] = rot
    matrix[:3, 3] = torch.tensor([0.5, 0.0, -1.0])
    editor.transform(matrix, mask=torch.ones(8, dtype=torch.bool), rotate_sh=False)
    r4 = torch.eye(4, dtype=torch.float64)
    r4[:3, :3] = rot
    after_cov = scene.gaussians4()[1].detach().double()
    assert torch.allclose(after_cov, r4 @ before_cov @ r4.T, atol=1e-5)
    with pytest.raises(ValueError, match="rigid"):
        editor.transform(matrix, scale=2.0, mask=torch.ones(8, dtype=torch.bool))


def test_ply_round_trip_is_exact_and_3dgs_readers_see_the_peak_slice(tmp_path):
    scene = random_scene4(n=25, degree=2, seed=9)
    scene.time_range = (0.25, 0.75)
    scene.time_filter = 0.0123
    path = tmp_path / "scene4d.ply"
    scene.save_ply(path)
    loaded = load_scene(path)
    assert isinstance(loaded, Gaussian4DScene) and loaded.sh_degree == 2 and loaded.time_range == (0.25, 0.75)
    assert loaded.time_filter == 0.0123
    for name, value in scene.params.items():
        assert torch.equal(loaded.params[name], value.detach()), name
    # a 3DGS reader gets each primitive at its own mean time (the 3D conditional covariance)
    flat = GaussianScene.from_ply(path)
    covar3 = quat_to_rotmat(flat.quats) * flat.scales[:, None, :]
    covar3 = covar3 @ covar3.transpose(-1, -2)
    with torch.no_grad():
        sigma3 = scene.conditional()[0]
    assert torch.allclose(covar3, sigma3, rtol=1e-4, atol=1e-6)
    assert torch.equal(flat.means, scene.means.detach())


def test_ply_missing_4d_property_names_file_and_property(tmp_path):
    from plyfile import PlyData, PlyElement

    scene = random_scene4(n=4, seed=10)
    path = tmp_path / "full.ply"
    scene.save_ply(path)
    vertex = PlyData.read(str(path))["vertex"].data
    kept = [name for name in vertex.dtype.names if name != "rotr_2"]
    broken = tmp_path / "broken.ply"
    table = np.empty(len(vertex), dtype=[(name, "<f4") for name in kept])
    for name in kept:
        table[name] = vertex[name]
    PlyData([PlyElement.describe(table, "vertex")]).write(str(broken))
    with pytest.raises(ValueError, match=r"broken\.ply.*rotr_2"):
        load_scene(broken)


def test_checkpoint_state_round_trip_keeps_kind_and_time_range():
    from scenes import scene_from_state

    scene = random_scene4(n=6, seed=11)
    scene.time_range = (0.1, 0.9)
    scene.time_filter = 0.05
    back = scene_from_state(scene.state())
    assert isinstance(back, Gaussian4DScene) and back.time_range == (0.1, 0.9) and back.time_filter == 0.05
    with pytest.raises(ValueError, match="gaussian4d"):
        GaussianScene.from_state(scene.state())


def _moving_scene() -> Gaussian4DScene:
    ql, qr = xt_rotor(-0.6)
    params = {
        "means": torch.tensor([[0.0, 0.0, 4.0]]),
        "times": torch.tensor([[0.5]]),
        "quats": ql[None],
        "quats_r": qr[None],
        "log_scales": torch.log(torch.tensor([[0.6, 0.3, 0.3]])),
        "log_scale_t": torch.log(torch.tensor([[1.0]])),
        "opacity_logits": torch.tensor([3.0]),
        "sh_dc": torch.full((1, 1, 3), 1.5),
        "sh_rest": torch.zeros(1, 0, 3),
    }
    return Gaussian4DScene(params, sh_degree=0)


def test_render_at_two_times_differs_when_a_primitive_moves():
    scene = _moving_scene()
    with torch.no_grad():
        velocity = scene.conditional()[1][0]
    assert abs(float(velocity[0])) > 0.1 and abs(float(velocity[1])) < 1e-6
    cam = Camera(torch.eye(4), 40.0, 40.0, 24.0, 24.0, 48, 48)
    with torch.no_grad():
        early = render(scene, cam.with_time(0.2), backend="reference")
        late = render(scene, cam.with_time(0.8), backend="reference")
    assert (early.rgb - late.rgb).abs().max() > 0.1
    xs = torch.arange(48, dtype=torch.float32) + 0.5

    def centroid_x(alpha):
        weights = alpha[..., 0].sum(dim=0)
        return float((weights * xs).sum() / weights.sum())

    shift = centroid_x(late.alpha) - centroid_x(early.alpha)
    # 0.6 s of motion at velocity v, seen at depth 4 with focal 40 px
    expected = float(velocity[0]) * 0.6 * 40.0 / 4.0
    assert shift == pytest.approx(expected, rel=0.15)


def test_sf_render_camera_path_times_and_fixed_time(tmp_path):
    """Keyframes with times drive a 4D scene through sf-render; --time pins it; --frames renders a still."""
    import imageio.v3 as iio

    from render.camera_path import CameraPath, Keyframe, load_camera_path, save_camera_path
    from scripts.render_cli import RenderConfig, render_scene

    scene = _moving_scene()
    scene.save_ply(tmp_path / "moving.ply")
    cam = Camera(torch.eye(4), 40.0, 40.0, 24.0, 24.0, 48, 48)
    keys = [Keyframe.from_camera(cam.with_time(0.0)), Keyframe.from_camera(cam.with_time(1.0))]
    path_file = save_camera_path(tmp_path / "camera_path.json",
                                 CameraPath(keys, fps=4.0, seconds=1.0, width=48, height=48))
    assert [k.time for k in load_camera_path(path_file).keyframes] == [0.0, 1.0]
    out = tmp_path / "path"
    render_scene(RenderConfig(scene=tmp_path / "moving.ply", mode="camera-path", camera_path=path_file, output=out,
                              backend="reference"))
    first, last = (iio.imread(out / f"frame_{i:05d}.png").astype(float) for i in (0, 3))
    assert np.abs(first - last).max() > 60  # the primitive moved between the keyframes' times
    pinned = tmp_path / "pinned"
    render_scene(RenderConfig(scene=tmp_path / "moving.ply", mode="camera-path", camera_path=path_file, output=pinned,
                              backend="reference", time=0.5))
    a, b = (iio.imread(pinned / f"frame_{i:05d}.png").astype(float) for i in (0, 3))
    assert np.abs(a - b).max() < 2
    still = tmp_path / "still"
    assert render_scene(RenderConfig(scene=tmp_path / "moving.ply", mode="camera-path", camera_path=path_file,
                                     output=still, backend="reference", time=0.5, frames=(0,))) == 1
    assert np.abs(iio.imread(still / "frame_00000.png").astype(float) - a).max() < 2
    assert not list(still.glob("*.mp4"))


def test_viewer_frames_follow_the_time_of_a_4d_scene():
    """The viewer's frame path (camera from the client with the slider's time) renders the 4D slice at that time."""
    from viewer.frames import render_frame

    scene = _moving_scene()
    cam = Camera(torch.eye(4), 40.0, 40.0, 24.0, 24.0, 48, 48)
    early = render_frame(scene, cam.with_time(0.1), "Alpha", (0, 0, 0), backend="reference", strips=3)
    late = render_frame(scene, cam.with_time(0.9), "Alpha", (0, 0, 0), backend="reference", strips=3)
    xs = np.arange(48) + 0.5
    centroid = [float((img.image[..., 0].sum(0) * xs).sum() / img.image[..., 0].sum()) for img in (early, late)]
    with torch.no_grad():
        vx = float(scene.conditional()[1][0, 0])
    assert (centroid[1] - centroid[0]) * vx > 0 and abs(centroid[1] - centroid[0]) > 2.0
