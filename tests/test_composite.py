"""Meshes in splat scenes: loading errors, ray-cast colour/depth, depth composite, shadows, light estimation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from render import Camera, render
from render.composite import Light, angles_to_direction, composite, direction_to_angles, rasterize_meshes
from render.conventions import look_at_w2c
from render.light_estimation import estimate_light
from render.shadows import camera_ray_directions
from scenes.meshes import MeshAsset, MeshLoadError, load_mesh, load_mesh_bytes

from _mesh_scenes import angle_deg, probe_scene, scene_of, splat_plane

RED = (0.95, 0.05, 0.05)


def project(camera: Camera, point) -> tuple:
    p = camera.world_to_camera.double() @ torch.tensor([*point, 1.0], dtype=torch.float64)
    uv = camera.K.double() @ p[:3]
    return int(uv[0] / uv[2]), int(uv[1] / uv[2])


def splat_only(scene, camera):
    with torch.no_grad():
        out = render(scene, camera)
    return out.rgb.numpy(), out.alpha.numpy()[..., 0], out.depth.numpy()[..., 0]


# ----- loading --------------------------------------------------------------------------------------------
def test_mesh_loading_errors(tmp_path):
    with pytest.raises(MeshLoadError, match="not found"):
        load_mesh(tmp_path / "missing.obj")
    stl = tmp_path / "thing.stl"
    stl.write_text("solid x\nendsolid x\n")
    with pytest.raises(MeshLoadError, match="unsupported mesh type"):
        load_mesh(stl)
    points_only = tmp_path / "points.obj"
    points_only.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(MeshLoadError, match="no triangles|empty"):
        load_mesh(points_only)
    tri = tmp_path / "tri.obj"
    tri.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\n")
    assert load_mesh(tri).faces.shape == (2, 3)
    with pytest.raises(MeshLoadError, match="over the limit"):
        load_mesh(tri, max_faces=1)
    with pytest.raises(MeshLoadError, match="MB limit"):
        load_mesh(tri, max_bytes=10)
    with pytest.raises(MeshLoadError, match="unsupported"):
        load_mesh_bytes(b"abc", "evil.exe")
    with pytest.raises(MeshLoadError, match="empty"):
        load_mesh_bytes(b"", "x.glb")
    with pytest.raises(MeshLoadError, match="cannot read|no triangles"):
        load_mesh_bytes(b"definitely not a glb file", "x.glb")
    with pytest.raises(MeshLoadError, match="face indices"):
        MeshAsset("bad", np.zeros((3, 3)), [[0, 1, 5]])


def textured_quad() -> MeshAsset:
    """A unit quad in the z = 0 plane with a 2x2 texture: red top-left, green top-right, blue/white bottom."""
    texture = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    texture = np.repeat(np.repeat(texture, 8, axis=0), 8, axis=1)
    verts = [[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]]
    uv = [[0, 0], [1, 0], [1, 1], [0, 1]]
    return MeshAsset("quad", verts, [[0, 1, 2], [0, 2, 3]], uv=uv, texture=texture)


def test_texture_survives_glb_round_trip_and_is_sampled_right_way_up():
    quad = textured_quad()
    buf = io.BytesIO()
    quad.to_trimesh().export(buf, file_type="glb")
    again = load_mesh_bytes(buf.getvalue(), "quad.glb")
    assert again.texture is not None
    np.testing.assert_allclose(again.vertex_rgb(), quad.vertex_rgb(), atol=0.02)
    # seen from above (+z) with x to the right and y up in the image: uv (0, 1) is the top-left texel (red)
    cam = Camera.from_fov(look_at_w2c((0, 0, 2.0), (0, 0, 0), up=(0, 1, 0)), 0.6, 64, 64)
    img = rasterize_meshes([again], cam, Light(intensity=0.0, ambient=1.0)).rgb
    expect = {(20, 20): (1, 0, 0), (44, 20): (0, 1, 0), (20, 44): (0, 0, 1), (44, 44): (1, 1, 1)}
    for (x, y), colour in expect.items():
        np.testing.assert_allclose(img[y, x], colour, atol=0.05, err_msg=f"pixel {(x, y)}")


def test_shared_textured_cow_keeps_texture(shared_data):
    cow_path = shared_data / "meshes" / "cow" / "cow.obj"
    if not cow_path.exists():
        pytest.skip("cow mesh not in the shared data")
    cow = load_mesh(cow_path)
    assert cow.texture is not None and cow.texture.shape[2] == 3 and len(cow.uv) == len(cow.vertices)
    assert cow.to_trimesh().visual.kind == "texture"


# ----- depth composite ------------------------------------------------------------------------------------
def wall_view():
    """A green opaque splat wall in the plane y = 0, seen from y = -5."""
    scene = scene_of(splat_plane(1, 0.0, size=(3.0, 2.0)))
    cam = Camera.from_fov(look_at_w2c((0, -5.0, 0.0), (0, 0, 0)), 0.6, 128, 96)
    return scene, cam


def test_mesh_in_front_of_splats_wins_and_behind_loses():
    scene, cam = wall_view()
    front = MeshAsset.box("front", (0.4, 0.4, 0.4), center=(-0.6, -1.0, 0.0), color=RED)
    back = MeshAsset.box("back", (0.4, 0.4, 0.4), center=(0.6, 1.0, 0.0), color=RED)
    light = Light(ambient=1.0, intensity=0.0, shadow_strength=0.0)
    out = composite(scene, cam, [front, back], light, backend="cpu")
    rgb, alpha, depth = out.rgb.numpy(), out.alpha.numpy()[..., 0], out.depth.numpy()[..., 0]
    base_rgb, base_alpha, base_depth = splat_only(scene, cam)
    fx, fy = project(cam, (-0.6, -1.0, 0.0))
    bx, by = project(cam, (0.6, 1.0, 0.0))
    np.testing.assert_allclose(rgb[fy, fx], RED, atol=0.02)  # in front: the mesh
    assert depth[fy, fx] == pytest.approx(4.0 - 0.2, abs=0.02)  # the box's near face at camera z 3.8
    np.testing.assert_allclose(rgb[by, bx], base_rgb[by, bx], atol=3e-3)  # behind an opaque wall: the wall
    assert rgb[by, bx, 0] < 0.3
    assert depth[by, bx] == pytest.approx(base_depth[by, bx], abs=1e-4)
    # away from the boxes the splat render is untouched
    mesh_mask = rasterize_meshes([front, back], cam).mask
    np.testing.assert_allclose(rgb[~mesh_mask], base_rgb[~mesh_mask], atol=1e-5)
    assert alpha[fy, fx] == 1.0


def test_mesh_behind_a_semi_transparent_splat_shows_through():
    scene = scene_of(splat_plane(1, 0.0, size=(3.0, 2.0), color=(0.1, 0.2, 0.9), opacity=0.25))
    cam = Camera.from_fov(look_at_w2c((0, -5.0, 0.0), (0, 0, 0)), 0.6, 128, 96)
    back = MeshAsset.box("back", (0.6, 0.6, 0.6), center=(0.0, 1.0, 0.0), color=RED)
    bg = (0.3, 0.3, 0.3)
    out = composite(scene, cam, [back], Light(ambient=1.0, intensity=0.0, shadow_strength=0.0), background=bg, backend="cpu")
    with torch.no_grad():
        ref = render(scene, cam, background=bg)
    x, y = project(cam, (0.0, 1.0, 0.0))
    a = float(ref.alpha[y, x, 0])
    assert 0.2 < a < 0.9, a
    expected = ref.rgb[y, x].numpy() - (1 - a) * np.array(bg) + (1 - a) * np.array(RED)
    np.testing.assert_allclose(out.rgb.numpy()[y, x], expected, atol=0.01)
    assert out.rgb.numpy()[y, x, 0] > ref.rgb[y, x, 0].item() + 0.1  # visibly redder than the splat alone


# ----- shadows --------------------------------------------------------------------------------------------
GROUND_VIEW = dict(eye=(0.0, -3.0, 3.5), size=(160, 120))
BOX = dict(size=(0.6, 0.4, 0.3), center=(0.3, -0.2, 0.6))


def ground_points(cam: Camera) -> np.ndarray:
    """Where each pixel's ray meets the plane z = 0 (analytically, independent of the splat depth)."""
    dirs = camera_ray_directions(cam)
    c = cam.center.double().numpy()
    t = -c[2] / dirs[..., 2]
    return c + dirs * t[..., None]


def shadow_case(light_dir):
    scene = scene_of(splat_plane(2, 0.0, size=(4.0, 4.0), spacing=0.06, color=(0.7, 0.7, 0.7)))
    w, h = GROUND_VIEW["size"]
    cam = Camera.from_fov(look_at_w2c(GROUND_VIEW["eye"], (0, 0, 0)), 0.9, w, h)
    box = MeshAsset.box("box", BOX["size"], BOX["center"], color=RED)
    light = Light(direction=light_dir, shadow_strength=0.6)
    out = composite(scene, cam, [box], light, backend="cpu")
    base_rgb, base_alpha, _ = splat_only(scene, cam)
    mesh_mask = rasterize_meshes([box], cam).mask
    darkened = (out.rgb.numpy().mean(-1) < 0.8 * base_rgb.mean(-1)) & ~mesh_mask
    return cam, darkened, mesh_mask, base_alpha


def expected_shadow(cam, k_x: float) -> np.ndarray:
    """Box footprint on z = 0 swept along the light: x shifts by -h * k_x for heights h of the box."""
    g = ground_points(cam)
    (sx, sy, sz), (cx, cy, cz) = BOX["size"], BOX["center"]
    h0, h1 = cz - sz / 2, cz + sz / 2
    shifts = (-h0 * k_x, -h1 * k_x)
    x_lo, x_hi = cx - sx / 2 + min(shifts), cx + sx / 2 + max(shifts)
    return (g[..., 0] > x_lo) & (g[..., 0] < x_hi) & (np.abs(g[..., 1] - cy) < sy / 2)


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    return ~dilate(~mask, r)


@pytest.mark.parametrize("light_dir, k_x", [((0.0, 0.0, 1.0), 0.0), ((0.5, 0.0, 1.0), 0.5)])
def test_box_shadow_darkens_exactly_the_ground_under_it(light_dir, k_x):
    cam, darkened, mesh_mask, alpha = shadow_case(light_dir)
    expected = expected_shadow(cam, k_x) & ~mesh_mask & (alpha > 0.95)
    assert expected.sum() > 100, "test setup: the shadow should be visible"
    core = erode(expected, 2) & ~dilate(mesh_mask, 1)
    assert darkened[core].all(), f"{(~darkened[core]).sum()} shadowed pixels not darkened"
    stray = darkened & ~dilate(expected, 2)
    assert stray.sum() == 0, f"{stray.sum()} pixels darkened outside the shadow"
    assert darkened.sum() >= 0.8 * expected.sum()


def test_light_angles_round_trip():
    for az, el in ((0, 90), (30, 45), (-120, 10)):
        d = angles_to_direction(az, el)
        assert np.linalg.norm(d) == pytest.approx(1.0)
        az2, el2 = direction_to_angles(d)
        assert el2 == pytest.approx(el, abs=1e-6)
        if el < 90:
            assert az2 == pytest.approx(az, abs=1e-6)


# ----- light estimation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("light_dir", [(0.3, -0.4, 0.85), (-0.8, 0.5, 0.2)])
def test_light_estimation_finds_a_bright_cluster(light_dir):
    est = estimate_light(probe_scene(light_dir), (0.0, 0.0, 0.0), resolution=24, backend="cpu")
    assert angle_deg(est.direction, light_dir) < 15.0, est
    assert est.intensity > 3 * est.ambient > 0


# ----- batch renders and CLIs -----------------------------------------------------------------------------
def write_box_glb(path, color=RED):
    buf = io.BytesIO()
    MeshAsset.box("box", (0.6, 0.6, 0.6), color=color).to_trimesh().export(buf, file_type="glb")
    path.write_bytes(buf.getvalue())
    return path


def test_mesh_layout_json_and_mesh_view_match_composite(tmp_path):
    import json

    from render.composite import mesh_view
    from scenes.meshes import load_mesh_layout

    write_box_glb(tmp_path / "box.glb")
    layout = tmp_path / "layout.json"
    layout.write_text(json.dumps({
        "meshes": [{"path": "box.glb", "position": [-0.6, -1.0, 0.0], "wxyz": [1, 0, 0, 0], "scale": 0.8}],
        "light": {"direction": [0, -1, 1], "ambient": 1.0, "intensity": 0.0, "shadow_strength": 0.0},
    }))
    meshes, light = load_mesh_layout(layout)
    assert meshes[0].pose()[2] == pytest.approx(0.8)
    np.testing.assert_allclose(meshes[0].world_bounds()[0], [-0.84, -1.24, -0.24], atol=1e-6)
    scene, cam = wall_view()
    view = mesh_view(layout=layout, fallback=None)
    rgb = view(scene, cam, None, "cpu").numpy()
    x, y = project(cam, (-0.6, -1.0, 0.0))
    np.testing.assert_allclose(rgb[y, x], RED, atol=0.02)
    assert mesh_view((), None, fallback="plain") == "plain"
    layout.write_text(json.dumps({"meshes": [{"path": "box.glb"}], "light": {"colour": 1}}))
    with pytest.raises(ValueError, match="unknown light fields"):
        mesh_view(layout=layout)
    layout.write_text(json.dumps({"meshes": [{"position": [0, 0, 0]}]}))
    with pytest.raises(MeshLoadError, match="needs a 'path'"):
        load_mesh_layout(layout)


def test_sf_render_and_sf_view_take_meshes(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import imageio.v2 as imageio

    from render.camera_path import CameraPath, Keyframe, save_camera_path
    from scripts.render_cli import RenderConfig, render_scene

    scene, cam = wall_view()
    ply = tmp_path / "wall.ply"
    scene.save_ply(ply)
    kf = Keyframe.from_camera(Camera.from_fov(look_at_w2c((0, -5.0, 0.0), (0, 0, 0)), 0.6, 64, 48))
    path = save_camera_path(tmp_path / "path.json", CameraPath([kf, kf], fps=2, seconds=1.0, width=64, height=48))
    glb = write_box_glb(tmp_path / "box.glb")  # at the origin: sticks out of the wall towards the camera
    plain, meshed = tmp_path / "plain", tmp_path / "meshed"
    render_scene(RenderConfig(scene=ply, mode="camera-path", camera_path=path, output=plain, backend="cpu"))
    render_scene(RenderConfig(scene=ply, mode="camera-path", camera_path=path, output=meshed, backend="cpu", meshes=(glb,)))
    a = imageio.imread(plain / "frame_00000.png").astype(int)
    b = imageio.imread(meshed / "frame_00000.png").astype(int)
    assert b[24, 32, 0] > 60 and b[24, 32, 1] < 30 and a[24, 32, 1] > 150  # (ambient-lit) red box over the green wall
    repo = Path(__file__).resolve().parents[1]
    bad = subprocess.run(
        [sys.executable, "-m", "scripts.view", "--scene", str(ply), "--port", "0", "--meshes", str(tmp_path / "nope.glb")],
        cwd=repo, capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2 and "cannot load mesh" in bad.stderr and "Traceback" not in bad.stderr
