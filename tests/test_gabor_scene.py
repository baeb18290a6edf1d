"""GaborScene (scenes/gabor_scene.py): parameters, frequencies in the primitive frame, split, MCMC relocation,
editing, checkpoints and the Gabor PLY (scenes/gabor_ply.py) with its bad-input errors. No rendering here
(tests/test_gabor_render.py renders)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from scenes import GaborScene, GaussianScene, load_scene, save_scene, scene_from_state
from scenes.editing import SplatEditor
from scenes.rotations import quat_to_matrix
from scenes.gabor_ply import gabor_property_names
from scenes.gabor_scene import dense_density, effective_weights, wrap_phase


def textured_scene(n: int = 6, num_terms: int = 4, seed: int = 0, sh_degree: int = 1) -> GaborScene:
    """Random Gabor primitives with every term active and non-zero weights."""
    gen = torch.Generator().manual_seed(seed)
    pts = torch.randn(n, 3, generator=gen).numpy() * 0.5
    scene = GaborScene.from_points(pts, np.random.default_rng(seed).uniform(0, 1, (n, 3)), sh_degree=sh_degree,
                                   initial_opacity=0.6, num_terms=num_terms)
    with torch.no_grad():
        scene.params["quats"].copy_(torch.randn(n, 4, generator=gen))
        scene.params["log_scales"].copy_(torch.log(torch.rand(n, 3, generator=gen) * 0.2 + 0.1))
        scene.params["gabor_nu"].copy_(torch.randn(n, num_terms, 3, generator=gen))
        scene.params["gabor_raw_weights"].copy_(torch.randn(n, num_terms, generator=gen))
        scene.params["gabor_phases"].copy_(torch.rand(n, num_terms, generator=gen) * 6.28 - 3.14)
        scene.params["gabor_active"].fill_(1.0)
        scene.params["gabor_active"][0, 1] = 0.0
    return scene


def test_shapes_and_zero_start():
    scene = GaborScene.from_points(np.random.default_rng(0).normal(size=(10, 3)), sh_degree=2)
    assert scene.num_terms == 4 and scene.KIND == "gabor"
    inputs = scene.rasterizer_inputs(None, sh_degree=2)
    assert inputs["gabor_freqs"].shape == (10, 4, 3)
    assert inputs["gabor_weights"].shape == (10, 4) and inputs["gabor_phases"].shape == (10, 4)
    assert torch.equal(inputs["gabor_weights"], torch.zeros(10, 4))  # exactly a Gaussian
    assert scene.num_active_terms() == 0
    assert not scene.params["gabor_active"].requires_grad and scene.params["gabor_raw_weights"].requires_grad
    with pytest.raises(ValueError, match="gabor_phases"):
        params = {k: v.detach() for k, v in scene.params.items()}
        params["gabor_phases"] = torch.zeros(10, 3)
        GaborScene(params, sh_degree=2)
    with pytest.raises(ValueError, match="gabor_active"):
        params = {k: v.detach() for k, v in scene.params.items()}
        params["gabor_active"] = torch.full((10, 4), 0.5)
        GaborScene(params, sh_degree=2)


def test_effective_weights_bounded_and_masked():
    raw = torch.randn(1000, 4) * 10
    active = (torch.rand(1000, 4) > 0.3).float()
    w = effective_weights(raw, active)
    assert (w.abs().sum(-1) < 1).all()
    assert torch.equal(w[active == 0], torch.zeros_like(w[active == 0]))
    # at u = 0 the weight's gradient is 1: a term that is switched on can leave zero
    u = torch.zeros(1, 4, requires_grad=True)
    effective_weights(u, torch.ones(1, 4))[0, 2].backward()
    assert u.grad[0, 2] == 1.0


def test_frequencies_in_primitive_frame_and_editor_transform_keeps_density():
    scene = textured_scene()
    points = torch.randn(200, 3) * 0.6
    before = dense_density(scene, points)
    editor = SplatEditor(scene)
    editor.select_all()
    axis = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    angle = 0.7
    axis = axis / axis.norm()
    kx = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=torch.float64)
    rot = torch.eye(3, dtype=torch.float64) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[:3, :3], matrix[:3, 3] = rot, torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64)
    editor.transform(matrix, scale=1.7)
    moved = (points.double() * 1.7) @ rot.T + matrix[:3, 3]
    after = dense_density(scene, moved.float())
    assert torch.allclose(after, before, rtol=1e-3, atol=1e-4)  # the texture rotated and scaled with the primitives
    editor.undo()
    assert torch.allclose(dense_density(scene, points), before, atol=1e-5)


def test_split_keeps_the_parents_world_pattern():
    scene = textured_scene()
    rows = {k: v.detach().clone() for k, v in scene.params.items()}
    children = scene.split_rows(rows, torch.Generator().manual_seed(3))
    parent = GaborScene(rows, sh_degree=1)
    points = torch.randn(300, 3) * 0.5
    for child_rows in children:
        child = GaborScene(child_rows, sh_degree=1)
        assert torch.allclose(child.gabor_freqs, parent.gabor_freqs, atol=1e-4)
        assert torch.equal(child.gabor_weights, parent.gabor_weights)  # the texture is carried once by each envelope
        d_parent = points[:, None] - parent.means[None]
        d_child = points[:, None] - child.means[None]
        m_parent = torch.cos(torch.einsum("nkj,pnj->pnk", parent.gabor_freqs, d_parent) + parent.params["gabor_phases"])
        m_child = torch.cos(torch.einsum("nkj,pnj->pnk", child.gabor_freqs, d_child) + child.params["gabor_phases"])
        assert torch.allclose(m_child, m_parent, atol=2e-3)
    assert (children[0]["gabor_phases"].abs() <= math.pi + 1e-6).all()


def test_mcmc_relocation_keeps_world_frequencies():
    from trainers.strategies import MCMCStrategy

    scene = textured_scene(n=8)
    with torch.no_grad():
        scene.params["opacity_logits"][:4] = -10.0  # dead: relocated onto the live ones
    freqs_before = scene.gabor_freqs.detach().clone()
    strategy = MCMCStrategy(cap_max=8)
    strategy.initialise(scene, 1.0)
    moved = strategy.relocate(scene, {})
    assert moved == 4
    freqs_after = scene.gabor_freqs.detach()
    # every row now carries the world frequencies of some live parent (sources rescaled, copies copied)
    for i in range(8):
        assert any(torch.allclose(freqs_after[i], freqs_before[j], rtol=1e-4, atol=1e-4) for j in range(4, 8))
    assert not torch.allclose(scene.params["gabor_nu"][4:], textured_scene(n=8).params["gabor_nu"][4:])


def test_checkpoint_state_round_trip_and_kind_errors(tmp_path):
    scene = textured_scene(num_terms=3)
    state = scene.state()
    assert state["kind"] == "gabor" and state["num_terms"] == 3
    again = scene_from_state(state)
    assert isinstance(again, GaborScene) and again.num_terms == 3
    for name in scene.params:
        assert torch.equal(again.params[name], scene.params[name])
    with pytest.raises(ValueError, match="'gabor' scene, not a 'gaussian'"):
        GaussianScene.from_state(state)
    torch.save({"scene": state}, tmp_path / "c.pt")
    assert isinstance(load_scene(tmp_path / "c.pt"), GaborScene)


def test_ply_round_trip_is_exact_and_opens_as_gaussians(tmp_path):
    scene = textured_scene(num_terms=4, sh_degree=2)
    path = tmp_path / "gabor.ply"
    save_scene(scene, path)
    loaded = load_scene(path)
    assert isinstance(loaded, GaborScene) and loaded.sh_degree == 2 and loaded.num_terms == 4
    for name in scene.params:
        assert torch.equal(loaded.params[name], scene.params[name]), name
    plain = GaussianScene.from_ply(path)  # a tool that ignores unknown properties: the envelopes
    for name in GaussianScene.PARAM_NAMES:
        assert torch.equal(plain.params[name], scene.params[name])
    from plyfile import PlyData

    header = PlyData.read(str(path))
    assert [p.name for p in header["vertex"].properties][-24:] == gabor_property_names(4)
    with pytest.raises(ValueError, match="Gabor"):
        save_scene(scene, tmp_path / "g.splat")


def test_plain_gaussian_ply_loads_as_zero_weight_gabor(tmp_path):
    gauss = GaussianScene.from_points(np.random.default_rng(1).normal(size=(7, 3)), sh_degree=1)
    gauss.save_ply(tmp_path / "plain.ply")
    gabor = GaborScene.from_ply(tmp_path / "plain.ply", num_terms=2)
    assert gabor.num_terms == 2 and gabor.num_active_terms() == 0
    assert torch.equal(gabor.params["means"], gauss.params["means"])
    assert isinstance(load_scene(tmp_path / "plain.ply"), GaussianScene)  # load_scene keeps a plain PLY plain
    converted = GaborScene.from_gaussian_scene(gauss)
    assert torch.equal(converted.gabor_weights, torch.zeros(7, 4))


def _write_vertex(path, columns):
    from plyfile import PlyData, PlyElement

    n = len(next(iter(columns.values())))
    vertex = np.empty(n, dtype=[(name, "<f4") for name in columns])
    for name, values in columns.items():
        vertex[name] = values
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))


def _columns(scene):
    """The standard and Gabor vertex columns of `scene` (to write edited, bad files)."""
    from scenes.gabor_ply import _columns as gabor_columns

    params = {k: v.detach().cpu() for k, v in scene.params.items()}
    base = {}
    n = len(scene)
    base.update({a: params["means"][:, i].numpy() for i, a in enumerate("xyz")})
    base.update({f"f_dc_{i}": params["sh_dc"][:, 0, i].numpy() for i in range(3)})
    base["opacity"] = params["opacity_logits"].numpy()
    base.update({f"scale_{i}": params["log_scales"][:, i].numpy() for i in range(3)})
    base.update({f"rot_{i}": params["quats"][:, i].numpy() for i in range(4)})
    base.update(gabor_columns(params))
    assert n == len(base["x"])
    return base


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: [c.pop(k) for k in list(c) if k.startswith("gabor_phase_")], r"none of gabor_phase_\*"),
        (lambda c: c.pop("gabor_w_3"), r"term counts differ .*gabor_w_\* 3"),
        (lambda c: c.pop("gabor_nu_2_1"), r"gabor_nu_2_\* lacks"),
        (lambda c: c.pop("gabor_active_1"), r"gabor_active_\* skip term"),
        (lambda c: c.__setitem__("gabor_nu_1_0", np.array([0, np.nan, 0, 0, 0, 0], np.float32)), r"'gabor_nu_1_0' contains NaN"),
        (lambda c: c.__setitem__("gabor_w_0", np.array([np.inf, 0, 0, 0, 0, 0], np.float32)), r"'gabor_w_0' contains NaN or Inf"),
        (lambda c: c.__setitem__("gabor_active_2", np.full(6, 0.5, np.float32)), r"'gabor_active_2' must hold only 0 and 1"),
        (lambda c: c.__setitem__("gabor_extra", np.zeros(6, np.float32)), r"unknown Gabor vertex property 'gabor_extra'"),
    ],
)
def test_bad_gabor_ply_errors_name_file_and_property(tmp_path, edit, message):
    columns = _columns(textured_scene())
    edit(columns)
    path = tmp_path / "bad.ply"
    _write_vertex(path, columns)
    with pytest.raises(ValueError, match=message) as err:
        load_scene(path)
    assert str(path) in str(err.value)


def test_non_finite_scene_writes_nothing(tmp_path):
    scene = textured_scene()
    with torch.no_grad():
        scene.params["gabor_phases"][2, 1] = float("nan")
    with pytest.raises(ValueError, match="gabor_phase_1"):
        scene.save_ply(tmp_path / "x.ply")
    assert os.listdir(tmp_path) == []


def test_editor_select_delete_undo_save(tmp_path):
    scene = textured_scene(n=10)
    original = {k: v.detach().clone() for k, v in scene.params.items()}
    editor = SplatEditor(scene)
    editor.select_indices([1, 4, 7])
    assert editor.delete() == 3 and len(scene) == 7
    assert scene.params["gabor_nu"].shape == (7, 4, 3) and not scene.params["gabor_active"].requires_grad
    keep = [i for i in range(10) if i not in (1, 4, 7)]
    assert torch.equal(scene.params["gabor_phases"], original["gabor_phases"][keep])
    editor.save_ply(tmp_path / "edited.ply")
    assert len(load_scene(tmp_path / "edited.ply")) == 7
    editor.undo()
    for name, value in original.items():
        assert torch.equal(scene.params[name], value), name
    editor.select_indices([0, 2])
    editor.hide()
    inputs = scene.rasterizer_inputs()
    assert inputs["gabor_freqs"].shape == (8, 4, 3) and inputs["gabor_weights"].shape == (8, 4)
    part = editor.subset(torch.tensor([True] * 3 + [False] * 7))
    assert isinstance(part, GaborScene) and len(part) == 3


def test_wrap_phase():
    x = torch.tensor([0.0, 3.5, -3.5, 10.0])
    assert torch.allclose(torch.cos(wrap_phase(x)), torch.cos(x), atol=1e-6)
    assert (wrap_phase(x).abs() <= math.pi).all()
