"""Splat editing (scenes/editing.py, selection.py, rotations.py): selection builders, delete / hide / separate /
transform, undo / redo, PLY."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from render import Camera, render
from render.conventions import look_at_w2c
from scenes import GaussianScene
from scenes.editing import SplatEditor
from scenes.rotations import matrix_to_quat, quat_multiply, quat_to_matrix, sh_rotation
from scenes.selection import (
    combine,
    pick,
    project_points,
    select_box,
    select_color,
    select_opacity,
    select_rect,
    select_scale,
)
from scenes.gaussian_scene import rgb_to_sh_dc


def identity_camera(width: int = 64, height: int = 48, focal: float = 60.0) -> Camera:
    """At the origin looking down +z (OpenCV)."""
    return Camera(torch.eye(4), focal, focal, width / 2, height / 2, width, height)


def grid_scene() -> GaussianScene:
    """A 5x5 grid of small splats at z = 4 plus one big opaque splat at (0, 0, 2) occluding the grid centre."""
    xs, ys = np.meshgrid(np.linspace(-1.0, 1.0, 5), np.linspace(-0.6, 0.6, 5))
    pts = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, 4.0)], 1)
    pts = np.concatenate([pts, [[0.0, 0.0, 2.0]]])
    colors = np.tile([[0.2, 0.4, 0.9]], (len(pts), 1))
    colors[-1] = [0.9, 0.1, 0.1]
    scene = GaussianScene.from_points(pts, colors, sh_degree=1, initial_opacity=0.95)
    with torch.no_grad():
        scene.params["log_scales"][:] = math.log(0.03)
        scene.params["log_scales"][-1] = math.log(0.05)  # the occluder is big
    return scene


def pixel_of(camera, point):
    uv, _ = project_points(torch.tensor([point], dtype=torch.float32), camera)
    return uv[0].tolist()


# ----- selection builders ----------------------------------------------------------------------------------------
def test_rect_select_picks_exactly_the_centres_inside():
    scene, cam = grid_scene(), identity_camera()
    uv, _ = project_points(scene.means, cam)
    rect = (20.0, 10.0, 50.0, 30.0)
    expected = (uv[:, 0] >= 20) & (uv[:, 0] <= 50) & (uv[:, 1] >= 10) & (uv[:, 1] <= 30)
    got = select_rect(scene, cam, rect)
    assert torch.equal(got, expected) and 0 < int(got.sum()) < len(scene)
    # corners in either order
    assert torch.equal(select_rect(scene, cam, (50.0, 30.0, 20.0, 10.0)), expected)
    # behind the camera: nothing
    back = Camera(torch.diag(torch.tensor([-1.0, 1.0, -1.0, 1.0])), 60.0, 60.0, 32, 24, 64, 48)
    assert not select_rect(scene, back, (0, 0, 64, 48)).any()


def test_rect_select_visible_only_excludes_the_occluded_splat():
    scene, cam = grid_scene(), identity_camera()
    out = render(scene, cam, backend="cpu")
    centre_idx = int(torch.nonzero((scene.means[:, :2].abs().sum(1) < 1e-6) & (scene.means[:, 2] > 3))[0, 0])
    occluder = len(scene) - 1
    rect = (28.0, 20.0, 36.0, 28.0)  # around the image centre
    plain = select_rect(scene, cam, rect)
    assert plain[centre_idx] and plain[occluder]
    visible = select_rect(scene, cam, rect, depth=out.depth, alpha=out.alpha)
    assert visible[occluder] and not visible[centre_idx]
    # a corner splat (not occluded) stays selectable with the visible-only option
    corner = select_rect(scene, cam, (0, 0, 64, 48), depth=out.depth, alpha=out.alpha)
    assert int(corner.sum()) == len(scene) - 1


def test_click_pick_prefers_the_front_most_splat():
    scene, cam = grid_scene(), identity_camera()
    out = render(scene, cam, backend="cpu")
    occluder = len(scene) - 1
    assert pick(scene, cam, 32.0, 24.0, depth=out.depth) == occluder
    assert pick(scene, cam, 32.0, 24.0) == occluder  # nearest without a depth buffer
    # a grid corner, 2 px off its projection
    corner = 0
    u, v = pixel_of(cam, scene.means[corner].tolist())
    assert pick(scene, cam, u + 2, v - 1, depth=out.depth) == corner
    assert pick(scene, cam, 1.0, 47.0, radius_px=2) == -1


def test_attribute_and_box_selections():
    scene = grid_scene()
    with torch.no_grad():
        scene.params["opacity_logits"][:3] = -5.0  # ~0.0067
        scene.params["sh_dc"][5, 0] = rgb_to_sh_dc(torch.tensor([0.0, 1.0, 0.0]))
    low = select_opacity(scene, 0.0, 0.1)
    assert torch.equal(torch.nonzero(low)[:, 0], torch.tensor([0, 1, 2]))
    big = select_scale(scene, 0.04, 1.0)
    assert torch.equal(torch.nonzero(big)[:, 0], torch.tensor([len(scene) - 1]))
    green = select_color(scene, (0.0, 1.0, 0.0), 0.1)
    assert torch.equal(torch.nonzero(green)[:, 0], torch.tensor([5]))
    assert int(select_color(scene, (0.2, 0.4, 0.9), 0.05).sum()) == len(scene) - 2
    # oriented box: rotated 90 degrees about z, long along world y, around x = 1 column
    box = torch.eye(4, dtype=torch.float64)
    box[:3, :3] = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    box[:3, 3] = torch.tensor([1.0, 0.0, 4.0])
    inside = select_box(scene, box, (1.0, 0.1, 0.1))  # local x (= world y) long
    assert int(inside.sum()) == 5 and torch.allclose(scene.means[inside, 0], torch.tensor(1.0))
    assert torch.equal(select_box(scene, box, (1.0, 0.1, 0.1), inside=False), ~inside)


def test_combine_modes():
    a = torch.tensor([True, True, False, False])
    b = torch.tensor([False, True, True, False])
    assert combine(a, b, "replace").tolist() == b.tolist()
    assert combine(a, b, "add").tolist() == [True, True, True, False]
    assert combine(a, b, "subtract").tolist() == [True, False, False, False]
    with pytest.raises(ValueError):
        combine(a, b, "xor")


# ----- operations --------------------------------------------------------------------------------------------------
def test_delete_hide_separate_counts_and_render_hook():
    scene = grid_scene()
    ed = SplatEditor(scene)
    n = len(scene)
    ed.select_indices([0, 1, 2])
    assert ed.delete() == 3 and len(scene) == n - 3 and ed.num_selected == 0
    ed.select_indices([0, 1])
    assert ed.hide() == 2 and len(scene) == n - 3
    assert scene.rasterizer_inputs()["means"].shape[0] == n - 5  # hidden ones are not rendered
    assert ed.select_all() == n - 5  # hidden splats cannot be selected
    ed.select_indices([2, 3, 4])
    part = ed.separate()
    assert len(part) == 3 and len(scene) == n - 6
    assert torch.allclose(part.means[0], grid_scene().means[5])
    assert ed.unhide_all() == 2 and scene.rasterizer_inputs()["means"].shape[0] == n - 6
    # highlight tints selected splats' DC colour only
    ed.select_indices([0])
    cols = scene.rasterizer_inputs(sh_degree=1)["colors"]
    assert not torch.allclose(cols[0], scene.sh_coeffs[0]) and torch.allclose(cols[1], scene.sh_coeffs[1])
    ed.detach()
    assert torch.allclose(scene.rasterizer_inputs(sh_degree=1)["colors"], scene.sh_coeffs)


def random_rotation(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(4, generator=gen, dtype=torch.float64), dim=0)
    return quat_to_matrix(q)


def test_quaternion_helpers_round_trip():
    r = random_rotation(3)
    q = matrix_to_quat(r)
    assert torch.allclose(quat_to_matrix(q), r, atol=1e-12)
    q2 = matrix_to_quat(random_rotation(4))
    assert torch.allclose(quat_to_matrix(quat_multiply(q, q2)), r @ random_rotation(4), atol=1e-12)


def test_transform_moves_means_and_composes_rotations():
    scene = grid_scene()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        scene.params["quats"][:] = torch.nn.functional.normalize(torch.randn(len(scene), 4, generator=gen), dim=1)
    before = {k: v.detach().clone() for k, v in scene.params.items()}
    ed = SplatEditor(scene)
    ed.select_indices([0, 4, 7])
    r = random_rotation(5)
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3], m[:3, 3] = r, torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    assert ed.transform(m, scale=2.0) == 3
    idx = torch.tensor([0, 4, 7])
    ref_means = (2.0 * before["means"][idx].double()) @ r.T + m[:3, 3]
    assert torch.allclose(scene.means[idx].double(), ref_means, atol=1e-5)
    ref_rots = r @ quat_to_matrix(before["quats"][idx].double())
    assert torch.allclose(quat_to_matrix(scene.quats[idx].double()), ref_rots, atol=1e-5)
    assert torch.allclose(scene.params["log_scales"][idx], before["log_scales"][idx] + math.log(2.0), atol=1e-6)
    others = torch.ones(len(scene), dtype=torch.bool)
    others[idx] = False
    assert torch.equal(scene.means[others], before["means"][others])


def test_sh_rotation_matches_evaluating_along_the_rotated_direction():
    from cuda_rasterizer.reference import eval_sh

    r = random_rotation(7)
    gen = torch.Generator().manual_seed(2)
    coeffs = torch.randn(1, 16, 3, generator=gen, dtype=torch.float64)
    rotated = coeffs.clone()
    rotated[0, 1:] = sh_rotation(r, 3) @ coeffs[0, 1:]
    dirs = torch.nn.functional.normalize(torch.randn(20, 3, generator=gen, dtype=torch.float64), dim=1)
    new = eval_sh(3, rotated.expand(20, 16, 3), dirs)
    old = eval_sh(3, coeffs.expand(20, 16, 3), dirs @ r)  # rows: R^T d
    assert torch.allclose(new, old, atol=1e-9)


def test_rotated_scene_renders_like_the_original_from_the_inverse_camera():
    gen = torch.Generator().manual_seed(0)
    n = 150
    pts = torch.randn(n, 3, generator=gen) * 0.4
    scene = GaussianScene.from_points(pts.numpy(), torch.rand(n, 3, generator=gen).numpy(), sh_degree=2,
                                      initial_opacity=0.8)
    with torch.no_grad():
        scene.params["quats"][:] = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=1)
        scene.params["log_scales"][:] += torch.randn(n, 3, generator=gen) * 0.3
        scene.params["sh_rest"][:] = torch.randn(n, 8, 3, generator=gen) * 0.3
    scene.active_sh_degree = 2
    w2c = look_at_w2c((0.3, -2.5, 1.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    cam = Camera.from_fov(torch.as_tensor(w2c, dtype=torch.float32), 0.9, 48, 40)
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3], m[:3, 3] = random_rotation(11), torch.tensor([0.2, 0.1, -0.3], dtype=torch.float64)
    # reference: the original scene seen from the camera moved by the inverse: w2c' = w2c @ M^-1
    ref = render(scene, cam, backend="cpu").rgb
    SplatEditor(scene).transform(m, mask=torch.ones(n, dtype=torch.bool))
    moved_cam = Camera.from_fov((torch.as_tensor(w2c).double() @ torch.linalg.inv(m)).float(), 0.9, 48, 40)
    got = render(scene, moved_cam, backend="cpu").rgb
    assert ref.std() > 0.05
    assert (got - ref).abs().max() < 0.02, float((got - ref).abs().max())
    # without SH rotation the view-dependent colour differs: the check above can fail
    scene2 = GaussianScene.from_state(scene.state())
    ed = SplatEditor(scene2)
    ed.transform(torch.linalg.inv(m), mask=torch.ones(n, dtype=torch.bool), rotate_sh=False)
    back = render(scene2, cam, backend="cpu").rgb
    assert (back - ref).abs().max() > 0.02


def test_undo_redo_restores_parameters_exactly():
    scene = grid_scene()
    with torch.no_grad():
        scene.params["sh_rest"][:] = torch.randn(len(scene), 3, 3, generator=torch.Generator().manual_seed(0))
    ed = SplatEditor(scene)
    snapshots = [{k: v.detach().clone() for k, v in scene.params.items()}]
    hidden = [ed.hidden.clone()]

    def snap():
        snapshots.append({k: v.detach().clone() for k, v in scene.params.items()})
        hidden.append(ed.hidden.clone())

    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3], m[:3, 3] = random_rotation(1), torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    ed.select_indices([1, 3, 5, 20]); ed.transform(m, scale=1.3); snap()
    ed.select_indices([0, 3, 10]); ed.delete(); snap()
    ed.select_indices([2, 4]); ed.hide(); snap()
    ed.select_indices([6, 7, 8]); ed.separate(); snap()
    ed.select_indices([0, 1]); ed.transform(m); snap()
    ed.unhide_all(); snap()

    def same(state, k):
        assert ed.hidden.tolist() == hidden[k].tolist()
        for name, value in state.items():
            assert torch.equal(scene.params[name].detach(), value), (name, k)

    for k in range(len(snapshots) - 2, -1, -1):
        assert ed.undo()
        same(snapshots[k], k)
    assert not ed.undo()
    for k in range(1, len(snapshots)):
        assert ed.redo()
        same(snapshots[k], k)
    assert not ed.redo()
    # a new edit clears the redo stack
    ed.undo(); ed.select_indices([0]); ed.delete()
    assert not ed.can_redo


def test_history_is_bounded():
    scene = grid_scene()
    ed = SplatEditor(scene, max_history=3)
    for i in range(5):
        ed.select_indices([0]); ed.delete()
    assert len(ed.history_labels()) == 3
    ed2 = SplatEditor(grid_scene(), max_history_bytes=1)
    ed2.select_indices([0]); ed2.delete()
    assert not ed2.can_undo  # a single edit larger than the budget is not kept


def test_resized_scene_resets_the_editor():
    scene = grid_scene()
    ed = SplatEditor(scene)
    ed.select_indices([0]); ed.hide()
    scene.params["means"] = torch.nn.Parameter(scene.means.detach()[:5])  # as if a strategy pruned
    for name in ("quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest"):
        scene.params[name] = torch.nn.Parameter(scene.params[name].detach()[:5])
    assert scene.rasterizer_inputs()["means"].shape[0] == 5
    assert ed.num_selected == 0 and not ed.can_undo and ed.hidden.numel() == 5


def test_saved_ply_after_delete_round_trips(tmp_path):
    scene = grid_scene()
    ed = SplatEditor(scene)
    ed.select_indices([0, 1, 2, 3]); ed.delete()
    ed.select_indices([0]); ed.hide()
    path = tmp_path / "edited.ply"
    assert ed.save_ply(path) == len(scene) == 22  # hidden splats are saved
    back = GaussianScene.from_ply(path)
    assert len(back) == 22
    for name in scene.params:
        assert torch.allclose(back.params[name], scene.params[name].detach(), atol=1e-6), name
    assert ed.save_ply(tmp_path / "visible.ply", include_hidden=False) == 21
    assert len(GaussianScene.from_ply(tmp_path / "visible.ply")) == 21


def test_highlight_and_hidden_show_in_the_render():
    scene, cam = grid_scene(), identity_camera()
    plain = render(scene, cam, backend="cpu").rgb
    ed = SplatEditor(scene)
    ed.select_all()
    tinted = render(scene, cam, backend="cpu").rgb
    assert tinted[..., 1].sum() > 1.5 * plain[..., 1].sum()  # the yellow tint raises green on blue splats
    ed.highlight = False
    assert torch.allclose(render(scene, cam, backend="cpu").rgb, plain)
    ed.hide()
    assert float(render(scene, cam, backend="cpu").alpha.detach().max()) == 0.0
    ed.undo()
    assert torch.allclose(render(scene, cam, backend="cpu").rgb, plain)
