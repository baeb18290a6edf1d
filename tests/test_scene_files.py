"""GaussianScene files: the 3DGS PLY layout round trip, checkpoints and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scenes import GaussianScene, load_checkpoint, load_scene, save_checkpoint
from scenes.ply import gaussian_ply_property_names


def _random_scene(n: int = 50, degree: int = 3, seed: int = 0) -> GaussianScene:
    gen = torch.Generator().manual_seed(seed)
    params = {
        "means": torch.randn(n, 3, generator=gen),
        "quats": torch.randn(n, 4, generator=gen),
        "log_scales": torch.randn(n, 3, generator=gen),
        "opacity_logits": torch.randn(n, generator=gen),
        "sh_dc": torch.randn(n, 1, 3, generator=gen),
        "sh_rest": torch.randn(n, (degree + 1) ** 2 - 1, 3, generator=gen),
    }
    return GaussianScene(params, sh_degree=degree)


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_ply_round_trip_is_exact(tmp_path, degree):
    scene = _random_scene(degree=degree)
    path = tmp_path / "scene.ply"
    scene.save_ply(path)
    loaded = GaussianScene.from_ply(path)
    assert loaded.sh_degree == degree
    for name, value in scene.params.items():
        assert torch.equal(loaded.params[name], value.detach()), name


def test_ply_uses_standard_property_names_and_channel_major_rest(tmp_path):
    from plyfile import PlyData

    scene = _random_scene(n=3)
    path = tmp_path / "scene.ply"
    scene.save_ply(path)
    ply = PlyData.read(str(path))
    names = [p.name for p in ply["vertex"].properties]
    assert names == gaussian_ply_property_names(15)
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9] == "f_rest_0" and names[53] == "f_rest_44" and names[-4:] == ["rot_0", "rot_1", "rot_2", "rot_3"]
    assert ply.text is False and ply.byte_order == "<"
    # f_rest_1 is the second coefficient of the red channel (Inria's channel-major order).
    assert np.float32(ply["vertex"]["f_rest_1"][0]) == scene.params["sh_rest"][0, 1, 0].item()
    assert np.float32(ply["vertex"]["f_rest_15"][0]) == scene.params["sh_rest"][0, 0, 1].item()


def test_checkpoint_round_trip(tmp_path):
    scene = _random_scene()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"scene": scene.state(), "step": 7})
    assert load_checkpoint(path)["step"] == 7
    loaded = load_scene(path)
    assert all(torch.equal(loaded.params[k], v.detach()) for k, v in scene.params.items())
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_missing_ply_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ply"):
        GaussianScene.from_ply(tmp_path / "nope.ply")


def test_malformed_ply_names_the_file(tmp_path):
    path = tmp_path / "broken.ply"
    path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nend_header\n\x00")
    with pytest.raises(ValueError, match="broken.ply"):
        GaussianScene.from_ply(path)


def test_ply_without_gaussian_fields_names_missing_properties(tmp_path):
    from plyfile import PlyData, PlyElement

    vertex = np.zeros(4, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    path = tmp_path / "points.ply"
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))
    with pytest.raises(ValueError, match=r"points.ply.*missing vertex properties.*f_dc_0"):
        GaussianScene.from_ply(path)


def test_ply_with_nan_names_the_field(tmp_path):
    scene = _random_scene(n=4)
    path = tmp_path / "nan.ply"
    scene.save_ply(path)
    from plyfile import PlyData

    ply = PlyData.read(str(path), mmap=False)
    ply["vertex"]["opacity"][2] = np.nan
    ply.write(str(path))
    with pytest.raises(ValueError, match="opacity_logits"):
        GaussianScene.from_ply(path)


def test_scene_rejects_wrong_shapes():
    params = dict(_random_scene(n=4).params.items())
    params = {k: v.detach() for k, v in params.items()}
    params["quats"] = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"'quats' must have shape \(4, 4\)"):
        GaussianScene(params)


def test_from_points_scales_follow_neighbour_distance():
    grid = np.stack(np.meshgrid(np.arange(5), np.arange(5), np.arange(5), indexing="ij"), -1).reshape(-1, 3) * 0.1
    scene = GaussianScene.from_points(grid, np.full((125, 3), 0.25))
    # Interior points have 6 neighbours at 0.1, so the mean of the 3 nearest is 0.1.
    interior = np.all((grid > 0.05) & (grid < 0.35), axis=1)
    assert torch.allclose(scene.scales[torch.from_numpy(interior)], torch.tensor(0.1), rtol=1e-5)
    assert torch.allclose(scene.opacities, torch.tensor(0.1), atol=1e-6)
