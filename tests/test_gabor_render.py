"""Rendering Gabor scenes through render(): a zero-weight scene is its Gaussian scene, the training probe's gradient,
a split keeps the rendered texture, the viewer's modes and sf-render."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from render import Camera, render
from scenes import GaborScene, GaussianScene, load_scene

BACKENDS = ("cpu", "reference")


def camera(width: int = 64, height: int = 48) -> Camera:
    return Camera(torch.eye(4), 60.0, 60.0, width / 2, height / 2, width, height)


def gaussians(n: int = 40, seed: int = 0) -> GaussianScene:
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3)) * 0.5 + np.array([0.0, 0.0, 4.0])
    return GaussianScene.from_points(pts, rng.uniform(0, 1, (n, 3)), sh_degree=1, initial_opacity=0.7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_weight_scene_renders_exactly_as_its_gaussians(backend):
    gauss = gaussians()
    gabor = GaborScene.from_gaussian_scene(gauss)
    with torch.no_grad():  # candidate frequencies and phases do not matter while the weights are 0
        gabor.params["gabor_nu"].copy_(torch.randn(len(gabor), 4, 3))
        gabor.params["gabor_phases"].uniform_(-3, 3)
    a, b = render(gauss, camera(), backend=backend), render(gabor, camera(), backend=backend)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.alpha, b.alpha) and torch.equal(a.depth, b.depth)


def test_active_terms_change_the_image_and_the_probe_sees_inactive_terms():
    gabor = GaborScene.from_gaussian_scene(gaussians())
    gabor.probe_inactive = True
    with torch.no_grad():
        gabor.params["gabor_nu"].copy_(torch.randn(len(gabor), 4, 3))
        gabor.params["gabor_phases"].uniform_(-3, 3)
    target = torch.rand(48, 64, 3, generator=torch.Generator().manual_seed(1))
    grads = {}
    for backend in BACKENDS:
        gabor.zero_grad()
        out = render(gabor, camera(), backend=backend, background=(1, 1, 1))
        ((out.rgb - target) ** 2).mean().backward()
        grads[backend] = gabor.params["gabor_raw_weights"].grad.clone()
    assert grads["cpu"].abs().sum() > 0  # dL/dw of terms that are off: the residual's correlation with each wave
    assert torch.allclose(grads["cpu"], grads["reference"], rtol=1e-3, atol=1e-7)
    nu_grad = gabor.params["gabor_nu"].grad  # terms that are off pass nothing to their frequencies and phases
    assert nu_grad is None or torch.equal(nu_grad, torch.zeros_like(nu_grad))
    plain = render(gabor, camera(), backend="cpu").rgb
    with torch.no_grad():
        gabor.params["gabor_active"][:, 0] = 1.0
        gabor.params["gabor_raw_weights"][:, 0] = 1.0
    assert (render(gabor, camera(), backend="cpu").rgb - plain).abs().max() > 0.01


def _modulation(scene, cam):
    """(modulation - 1 per pixel, pixel mask): the image with the Gabor terms over the image without them, less 1.
    For faint primitives (alpha far below its clamp) that is the projected wave sum_k a_k cos(...), wherever the
    envelopes cover the pixel."""
    with torch.no_grad():
        textured = render(scene, cam, backend="cpu").rgb[..., 0]
        flat = GaborScene.from_gaussian_params({k: v.detach() for k, v in scene.params.items()}, scene.sh_degree)
        plain = render(flat, cam, backend="cpu").rgb[..., 0]
    covered = plain > 0.02
    return torch.where(covered, textured / plain.clamp(min=1e-6) - 1.0, torch.zeros_like(plain)), covered


def test_split_keeps_the_rendered_texture_once():
    """One large textured primitive split in two (as densification does): where the children cover the image, their
    texture is the parent's wave, once; keeping nu and phases as they were (a naive copy) would not be.

    The primitive is a thin disc facing the camera, so the children stay at its depth: a child moved in depth
    samples a perspective-projected 3D wave at another depth, which changes the image of the wave itself (the 3D
    density is exact in any case: test_gabor_scene.py::test_split_keeps_the_parents_world_pattern)."""
    cam = camera(96, 96)
    params = GaborScene.from_points(np.array([[0.0, 0.0, 4.0]]), np.array([[0.5, 0.5, 0.5]]), sh_degree=0,
                                    initial_opacity=0.15).params
    params = {k: v.detach().clone() for k, v in params.items()}
    params["log_scales"][:] = torch.log(torch.tensor([0.6, 0.5, 0.002]))
    params["quats"][:] = torch.tensor([0.98, 0.0, 0.0, 0.2])  # turned about the view axis only
    params["gabor_nu"][0, 0] = torch.tensor([1.5, 0.8, 0.0])
    params["gabor_active"][0, 0] = 1.0
    params["gabor_raw_weights"][0, 0] = 3.0  # w = 0.75
    parent = GaborScene(params, sh_degree=0)
    wave, parent_covered = _modulation(parent, cam)
    assert wave[parent_covered].abs().max() > 0.15  # the parent is visibly textured
    for seed in range(3):
        children = parent.split_rows({k: v.detach() for k, v in parent.params.items()}, torch.Generator().manual_seed(seed))
        rows = {k: torch.cat([c[k] for c in children]) for k in children[0]}
        split, covered = _modulation(GaborScene(rows, sh_degree=0), cam)
        naive_rows = dict(rows, gabor_nu=parent.params["gabor_nu"].detach().repeat(2, 1, 1),
                          gabor_phases=parent.params["gabor_phases"].detach().repeat(2, 1))
        naive, _ = _modulation(GaborScene(naive_rows, sh_degree=0), cam)
        both = covered & parent_covered
        assert both.sum() > 200
        error = (split - wave)[both].abs().mean()
        naive_error = (naive - wave)[both].abs().mean()
        assert error < 0.05 and naive_error > 4 * error, (seed, float(error), float(naive_error))


@pytest.mark.parametrize("mode", ["RGB", "Depth", "Alpha"])
def test_viewer_modes_render_gabor_scenes(mode):
    from viewer.frames import render_frame

    gabor = GaborScene.from_gaussian_scene(gaussians())
    with torch.no_grad():
        gabor.params["gabor_active"][:, :2] = 1.0
        gabor.params["gabor_raw_weights"][:, :2] = 0.8
        gabor.params["gabor_nu"].copy_(torch.randn(len(gabor), 4, 3))
    frame = render_frame(gabor, camera(), mode=mode, background=(1, 1, 1), backend="cpu", strips=2)
    assert frame.image.shape == (48, 64, 3) and frame.image.std() > 1.0


def test_sf_render_renders_a_gabor_ply(tmp_path):
    from scripts.render_cli import RenderConfig, render_scene

    gabor = GaborScene.from_gaussian_scene(gaussians())
    with torch.no_grad():
        gabor.params["gabor_active"][:, 0] = 1.0
        gabor.params["gabor_raw_weights"][:, 0] = 0.9
        gabor.params["gabor_nu"][:, 0] = torch.tensor([2.0, 0.0, 0.0])
    path = tmp_path / "gabor.ply"
    gabor.save_ply(path)
    assert isinstance(load_scene(path), GaborScene)
    path_json = tmp_path / "path.json"
    import json

    c2w = np.eye(4)
    c2w[:3, 1:3] *= -1  # OpenGL axes: looking down -z; flip to look at the scene at +z
    frame = {"camera_to_world": c2w.reshape(-1).tolist(), "fov": 50.0, "aspect": 4 / 3}
    path_json.write_text(json.dumps({"render_height": 24, "render_width": 32, "fps": 4, "camera_path": [frame, frame]}))
    out = tmp_path / "render"
    count = render_scene(RenderConfig(scene=path, output=out, mode="camera-path", camera_path=path_json, backend="cpu"))
    assert count == 2 and len(list(out.glob("frame_*.png"))) == 2


def test_editor_highlight_and_hide_on_gabor_scene():
    from scenes.editing import SplatEditor

    gabor = GaborScene.from_gaussian_scene(gaussians())
    with torch.no_grad():
        gabor.params["gabor_active"][:, 0] = 1.0
        gabor.params["gabor_raw_weights"][:, 0] = 0.9
        gabor.params["gabor_nu"][:, 0] = torch.tensor([2.0, 0.0, 0.0])
    editor = SplatEditor(gabor)
    before = render(gabor, camera(), backend="cpu").rgb
    editor.select_indices(list(range(10)))
    editor.hide()
    hidden = render(gabor, camera(), backend="cpu").rgb
    assert (hidden - before).abs().max() > 0.01
    editor.undo()
    assert torch.equal(render(gabor, camera(), backend="cpu").rgb, before)
    assert math.isfinite(float(hidden.detach().sum()))
