"""One compositor: splats, a radiance field and meshes ordered per pixel by depth, on constructed scenes.

The field here is an analytic slab (uniform density between two z planes) with the RadianceField ray interface, so
each case has an exact expected colour; the splats are a real Gaussian plane rendered by the CPU rasterizer."""

import math

import numpy as np
import pytest
import torch

from render import Camera, render
from render.composite import Light, composite
from scenes.hybrid import HybridScene
from scenes.meshes import MeshAsset

from _mesh_scenes import BLUE, SlabField, scene_of, splat_plane

RED, GREEN = (0.9, 0.1, 0.1), (0.1, 0.8, 0.2)
LEFT, RIGHT = (16, 8), (16, 24)  # (row, col): the splats cover the left half only


def camera():
    return Camera(torch.eye(4), 16.0, 16.0, 16.0, 16.0, 32, 32)  # at the origin looking down +z, 90 degree fov


def splats_left(z=3.0):
    return scene_of(splat_plane(2, z, size=(6.0, 8.0), center=(-3.2, 0.0), spacing=0.1, color=RED))


def pixel(out, where):
    return out.rgb[where[0], where[1]].numpy()


def test_field_alone_over_background():
    out = render(SlabField(5, 6, sigma=math.log(2)), camera(), background=(1.0, 1.0, 1.0))  # alpha 1/2 head-on
    centre = out.rgb[16, 16].numpy()
    np.testing.assert_allclose(centre, 0.5 * np.array(BLUE) + 0.5, atol=2e-2)


def test_splats_in_front_occlude_the_field_which_shows_where_splat_alpha_is_low():
    out = render(HybridScene(splats_left(3.0), SlabField(5, 6)), camera())
    np.testing.assert_allclose(pixel(out, LEFT), RED, atol=3e-2)
    np.testing.assert_allclose(pixel(out, RIGHT), BLUE, atol=3e-2)
    assert float(out.depth[LEFT]) == pytest.approx(3.0, abs=0.05)
    assert float(out.depth[RIGHT]) == pytest.approx(5.5, abs=0.1)  # the slab field reports its mid-depth


def test_field_in_front_of_splats_occludes_them_and_half_transparent_field_mixes():
    out = render(HybridScene(splats_left(3.0), SlabField(1, 2)), camera())
    np.testing.assert_allclose(pixel(out, LEFT), BLUE, atol=3e-2)
    half = SlabField(1.0, 1.5, sigma=2 * math.log(2) / 1.0)  # alpha 1/2 over 0.5 along the axis
    out = render(HybridScene(splats_left(3.0), half), camera())
    centre_left = out.rgb[16, 12].numpy()  # near the axis: path length ~0.5
    expect = 0.5 * np.array(BLUE) + 0.5 * np.array(RED)
    np.testing.assert_allclose(centre_left, expect, atol=6e-2)


def test_field_as_background_only_stays_behind_the_splats():
    out = render(HybridScene(splats_left(3.0), SlabField(1, 2), field_mode="background"), camera())
    np.testing.assert_allclose(pixel(out, LEFT), RED, atol=3e-2)
    np.testing.assert_allclose(pixel(out, RIGHT), BLUE, atol=3e-2)


def test_hidden_layers_are_not_drawn():
    scene = HybridScene(splats_left(3.0), SlabField(5, 6))
    scene.show_splats = False
    np.testing.assert_allclose(pixel(render(scene, camera()), LEFT), BLUE, atol=3e-2)
    scene.show_splats, scene.show_field = True, False
    np.testing.assert_allclose(pixel(render(scene, camera()), RIGHT), (0, 0, 0), atol=1e-3)


def test_meshes_terminate_rays_through_field_and_splats():
    flat = Light(intensity=0.0, ambient=1.0, shadow_strength=0.0)  # mesh colour unshaded
    box = MeshAsset.box("box", (4.0, 8.0, 0.2), center=(2.5, 0.0, 4.0), color=GREEN)  # right half, z = 4
    behind = composite(HybridScene(splats_left(3.0), SlabField(5, 6)), camera(), [box], flat, shadows=False)
    np.testing.assert_allclose(pixel(behind, RIGHT), GREEN, atol=3e-2)  # mesh in front of the field
    np.testing.assert_allclose(pixel(behind, LEFT), RED, atol=3e-2)
    assert float(behind.depth[RIGHT]) == pytest.approx(3.9, abs=0.05)
    front = composite(SlabField(1, 2), camera(), [box], flat, shadows=False)
    np.testing.assert_allclose(pixel(front, RIGHT), BLUE, atol=3e-2)  # field in front of the mesh
    near_box = MeshAsset.box("near", (8.0, 8.0, 0.2), center=(0.0, 0.0, 2.0), color=GREEN)  # before the splats
    out = composite(HybridScene(splats_left(3.0), SlabField(5, 6)), camera(), [near_box], flat, shadows=False)
    np.testing.assert_allclose(pixel(out, LEFT), GREEN, atol=3e-2)


def test_field_density_shadows_the_mesh():
    light = Light(direction=(1.0, 0.0, -1.0), intensity=0.8, ambient=0.2, shadow_strength=0.0)
    floor = MeshAsset.box("floor", (20.0, 20.0, 0.2), center=(0.0, 0.0, 6.1), color=(1.0, 1.0, 1.0))
    clear = composite(SlabField(1, 1.05, sigma=0.0, xlim=(3, 8)), camera(), [floor], light)
    # an opaque sheet out of the camera's view (x in 3..8 at z = 1) but between the floor's centre and the light
    fog = composite(SlabField(1, 1.05, sigma=500.0, xlim=(3, 8)), camera(), [floor], light)
    lit, dark = pixel(clear, (16, 16)).mean(), pixel(fog, (16, 16)).mean()
    assert lit == pytest.approx(0.2 + 0.8 / math.sqrt(2), abs=0.03)
    assert dark == pytest.approx(0.2, abs=0.03)  # ambient only: the field's density blocks the light


def test_mesh_shadows_fall_on_the_field():
    field = SlabField(5, 6, color=(1.0, 1.0, 1.0))
    up = Light(direction=(0.0, 0.0, 1.0), intensity=0.8, ambient=0.2, shadow_strength=0.6)  # light beyond the field
    aside = MeshAsset.box("aside", (1.0, 1.0, 0.2), center=(-30.0, -30.0, 20.0), color=GREEN)  # casts nothing here
    clear = composite(field, camera(), [aside], up)
    shield = MeshAsset.box("shield", (40.0, 40.0, 0.2), center=(0.0, 0.0, 9.0), color=GREEN)  # behind the field
    shadowed = composite(field, camera(), [aside, shield], up)
    assert pixel(clear, (16, 16)).mean() == pytest.approx(1.0, abs=0.03)
    assert pixel(shadowed, (16, 16)).mean() == pytest.approx(0.4, abs=0.05)  # 1 - shadow_strength


def test_sf_render_and_the_viewer_shadow_the_field_alike():
    """sf-render (composite) and the viewer (field frame + MeshLayer's shadow_splats pass) agree off the mesh."""
    from render.composite import shadow_splats
    from render.shadows import build_shadow_map

    field = SlabField(5, 6, color=(1.0, 1.0, 1.0))
    up = Light(direction=(0.2, 0.1, 1.0), intensity=0.8, ambient=0.2, shadow_strength=0.6)
    shield = MeshAsset.box("shield", (1.5, 1.5, 0.2), center=(0.0, 0.0, 8.0), color=GREEN)  # behind: casts onto it
    sf_render = composite(field, camera(), [shield], up, self_shadow=False, shadow_resolution=384)
    frame = render(field, camera())
    smap = build_shadow_map([shield], up.unit_direction, 384)
    viewer, _ = shadow_splats(frame.rgb.double().numpy(), frame.alpha.double().numpy(), frame.depth.double().numpy(),
                              camera(), smap, up.shadow_strength)
    np.testing.assert_allclose(sf_render.rgb.numpy(), viewer, atol=2e-3)
    assert viewer.min() < 0.5  # the shadow is there
