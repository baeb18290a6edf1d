"""The field's density shadows meshes in the viewer (per-vertex light baked into the GLB) as in sf-render."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch

from render import Camera
from render.composite import Light, composite
from scenes.hybrid import HybridScene
from scenes.meshes import MeshAsset

from _mesh_scenes import SlabField
from browser_support import poll

LIGHT = Light(direction=(1.0, 0.0, -1.0), intensity=0.8, ambient=0.2, shadow_strength=0.0)
LIT = 0.2 + 0.8 / math.sqrt(2)  # Lambert light of a surface facing -z under LIGHT


def fog():
    """An opaque sheet at z in [1, 1.05], x in [3, 8]: seen from z = 6 towards the light, it covers x in [-2, 3]."""
    return SlabField(1, 1.05, sigma=500.0, xlim=(3, 8))


def floor_grid(color=(1.0, 1.0, 1.0), texture=False) -> MeshAsset:
    """A plane at z = 6 facing the camera at the origin (-z), vertices every 0.5 in x (-8..8) and y (-2..2)."""
    xs, ys = np.arange(-8.0, 8.01, 0.5), np.arange(-2.0, 2.01, 0.5)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    vertices = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, 6.0)], axis=1)
    ny = len(ys)
    faces = []
    for i in range(len(xs) - 1):
        for j in range(ny - 1):
            a, b, c, d = i * ny + j, (i + 1) * ny + j, (i + 1) * ny + j + 1, i * ny + j + 1
            faces += [(a, c, b), (a, d, c)]  # wound so the normal is -z
    extra = {}
    if texture:
        extra = dict(texture=np.full((4, 4, 3), 255, np.uint8), uv=(vertices[:, :2] + 8.0) / 16.0)
    return MeshAsset("floor", vertices, np.asarray(faces), color=color, **extra)


def glb_color0(glb: bytes) -> np.ndarray:
    """The float COLOR_0 of a GLB's first primitive (as `_add_vertex_shade` writes it)."""
    json_len = struct.unpack_from("<I", glb, 12)[0]
    doc = json.loads(glb[20 : 20 + json_len])
    binary = glb[20 + json_len + 8 :]
    accessor = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["COLOR_0"]]
    view = doc["bufferViews"][accessor["bufferView"]]
    return np.frombuffer(binary, "<f4", accessor["count"] * 3, view["byteOffset"]).reshape(-1, 3)


def test_vertex_shading_matches_the_per_pixel_pass_of_sf_render():
    from render.field_meshes import field_vertex_shading

    floor = floor_grid()
    normals_check = field_vertex_shading(floor, SlabField(1, 1.05, sigma=0.0, xlim=(3, 8)), LIGHT)
    np.testing.assert_allclose(normals_check, 1.0, atol=1e-6)  # no density: the light is unchanged
    shade = field_vertex_shading(floor, fog(), LIGHT)
    x = floor.vertices[:, 0]
    np.testing.assert_allclose(shade[(x > -1.5) & (x < 2.5)], 0.2 / LIT, atol=0.02)  # ambient only in the shadow
    np.testing.assert_allclose(shade[(x < -2.5) | (x > 3.5)], 1.0, atol=0.02)
    # sf-render darkens the pixel that sees the vertex at (0, 0, 6) by the same factor
    camera = Camera(torch.eye(4), 16.0, 16.0, 16.0, 16.0, 32, 32)
    out = composite(fog(), camera, [floor], LIGHT)
    centre = int(np.argmin(np.linalg.norm(floor.vertices - [0.0, 0.0, 6.0], axis=1)))
    assert float(out.rgb[16, 16].mean()) == pytest.approx(shade[centre] * LIT, abs=0.03)


def test_glb_carries_the_baked_light_for_plain_and_textured_meshes():
    from viewer.mesh_panel import glb_bytes

    shade = np.linspace(0.2, 1.0, len(floor_grid().vertices))
    plain = floor_grid(color=(0.5, 1.0, 1.0)).to_trimesh(shade).visual.vertex_colors[:, :3] / 255.0
    np.testing.assert_allclose(plain[:, 0], 0.5 * shade, atol=3e-3)
    textured = floor_grid(texture=True)
    np.testing.assert_allclose(glb_color0(glb_bytes(textured, shade)), np.repeat(shade[:, None], 3, 1), atol=1e-6)


def test_viewer_meshes_darken_where_the_field_blocks_the_light_and_follow_edits():
    from viewer import ViewerServer
    from viewer.mesh_panel import mesh_layer

    scene = HybridScene(None, fog())
    server = ViewerServer(scene, port=0, max_resolution=48, verbose=False, backend="cpu")
    try:
        layer = mesh_layer(server)
        layer.field_shading.background = False  # bake() below, deterministically
        layer.set_light(LIGHT)
        name = layer.add(floor_grid())
        sent = layer.field_shading.bake()
        x = layer.meshes[name].vertices[:, 0]
        assert set(sent) == {name}
        np.testing.assert_allclose(sent[name][(x > -1.5) & (x < 2.5)], 0.2 / LIT, atol=0.02)
        assert layer.field_shading.bake() == {}  # nothing changed: nothing re-sent
        layer.move(name, (1.0, 0.0, 0.0, 0.0), (6.0, 0.0, 0.0))  # slide the floor 6 along x: the shadow moves
        moved = layer.field_shading.bake()[name]
        np.testing.assert_allclose(moved[(x > -7.5) & (x < -3.5)], 0.2 / LIT, atol=0.02)
        np.testing.assert_allclose(moved[(x > -1.5) & (x < 2.5)], 1.0, atol=0.02)
        scene.show_field = False  # a hidden field casts nothing: the plain mesh goes back
        assert layer.field_shading.bake() == {name: None}
        scene.show_field = True  # and in the product a background thread does the baking
        layer.field_shading.background = True
        layer.set_light(Light(direction=(1.0, 0.0, -1.0), intensity=0.6, ambient=0.4, shadow_strength=0.0))
        assert poll(lambda: layer.field_shading._baked.get(name) is not None, timeout=20)
        assert layer.field_shading.bake() == {}  # the thread already sent it
    finally:
        server.stop()
