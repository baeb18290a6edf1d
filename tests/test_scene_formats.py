"""Web formats: .splat and .spz round trips with quantisation bounds, the PLY header other tools parse, bad input."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest
import torch

from cuda_rasterizer.reference import eval_sh
from render import Camera, render
from scenes import GaussianScene, load_scene, save_scene
from scenes.splat_format import BYTES_PER_SPLAT, SH_C0, encode_splat, read_splat
from scenes.spz import SH_FLIP_YZ, decode_spz, encode_spz


def _scene(n: int = 400, degree: int = 3, seed: int = 0, spread: float = 0.6) -> GaussianScene:
    """Random Gaussians in front of the identity camera, in the value ranges trained scenes have."""
    gen = torch.Generator().manual_seed(seed)
    params = {
        "means": torch.randn(n, 3, generator=gen) * spread + torch.tensor([0.0, 0.0, 3.0]),
        "quats": torch.randn(n, 4, generator=gen),
        "log_scales": torch.rand(n, 3, generator=gen) * 2.5 - 4.5,
        "opacity_logits": torch.randn(n, generator=gen) * 2.0,
        "sh_dc": torch.rand(n, 1, 3, generator=gen) * 3.0 - 1.5,
        "sh_rest": (torch.rand(n, (degree + 1) ** 2 - 1, 3, generator=gen) * 2 - 1) * 0.4,
    }
    return GaussianScene(params, sh_degree=degree)


def _rotation_angle(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Angle in radians between the rotations of two quaternion sets (q and -q are the same rotation)."""
    dot = (torch.nn.functional.normalize(q1, dim=-1) * torch.nn.functional.normalize(q2, dim=-1)).sum(-1).abs()
    return 2 * torch.acos(dot.clamp(max=1.0))


def _match(original: GaussianScene, loaded: GaussianScene) -> torch.Tensor:
    """Index into `original` for each loaded splat (the .splat writer reorders), by nearest position."""
    return torch.cdist(loaded.means.detach().double(), original.means.detach().double()).argmin(dim=1)


def test_splat_round_trip_within_8_bit_quantisation(tmp_path):
    scene = _scene(degree=2)
    path = tmp_path / "scene.splat"
    save_scene(scene, path)
    assert path.stat().st_size == BYTES_PER_SPLAT * len(scene)
    loaded = load_scene(path)
    assert loaded.sh_degree == 0 and len(loaded) == len(scene)
    idx = _match(scene, loaded)
    assert sorted(idx.tolist()) == list(range(len(scene)))  # a permutation: every splat once
    p = {k: v.detach()[idx] for k, v in scene.params.items()}
    assert torch.equal(loaded.means.detach(), p["means"])  # float32 stored as is
    assert torch.allclose(loaded.scales.detach(), torch.exp(p["log_scales"]), rtol=1e-6)
    colour = (0.5 + SH_C0 * p["sh_dc"]).clamp(0, 1)
    assert (0.5 + SH_C0 * loaded.params["sh_dc"].detach() - colour).abs().max() <= 0.5 / 255 + 1e-6
    assert (loaded.opacities.detach() - torch.sigmoid(p["opacity_logits"])).abs().max() <= 0.5 / 255 + 1e-6
    assert _rotation_angle(loaded.quats.detach(), p["quats"]).max() < 0.05  # 8 bits per component
    # Written largest size * opacity first.
    weight = torch.exp(scene.params["log_scales"].detach().sum(-1)) * scene.opacities.detach()
    assert torch.all(weight[idx][:-1] >= weight[idx][1:] - 1e-12)


@pytest.mark.parametrize("version", [2, 3])
def test_spz_round_trip_within_the_formats_quantisation(tmp_path, version):
    scene = _scene(degree=3)
    payload = encode_spz({k: v.detach() for k, v in scene.params.items()}, 3, version=version)
    loaded = decode_spz(payload)
    assert loaded["sh_degree"] == 3
    out = loaded["params"]
    p = {k: v.detach() for k, v in scene.params.items()}
    assert (out["means"] - p["means"]).abs().max() <= 0.5 / 4096 + 1e-6  # 12 fraction bits
    assert (out["log_scales"] - p["log_scales"]).abs().max() <= 0.5 / 16 + 1e-6
    assert (torch.sigmoid(out["opacity_logits"]) - torch.sigmoid(p["opacity_logits"])).abs().max() <= 0.5 / 255 + 1e-6
    assert (out["sh_dc"] - p["sh_dc"]).abs().max() <= 0.5 / (0.15 * 255) + 1e-6
    assert (out["sh_rest"][:, :3] - p["sh_rest"][:, :3]).abs().max() <= 4.5 / 128 + 1e-6  # 5 bits: bucket of 8, after rounding to 1/128
    assert (out["sh_rest"][:, 3:] - p["sh_rest"][:, 3:]).abs().max() <= 8.5 / 128 + 1e-6  # 4 bits: bucket of 16
    angles = _rotation_angle(out["quats"], p["quats"])
    # v3 smallest-three: 9 bits + sign per component. v2 stores xyz in 8 bits and implies w, which loses precision
    # as w -> 0 (why v3 exists): bounded, and small for most splats.
    assert angles.max() < (0.005 if version == 3 else 0.2), f"v{version} rotation error {angles.max()}"
    assert angles.median() < (0.002 if version == 3 else 0.02)
    assert len(payload) < 0.5 * (59 * 4) * len(scene)  # far smaller than the PLY's 59 floats (and random data!)


def test_spz_file_renders_like_the_original(tmp_path):
    scene = _scene(n=300, degree=1)
    path = tmp_path / "scene.spz"
    save_scene(scene, path)
    loaded = load_scene(path)
    camera = Camera(torch.eye(4), fx=60.0, fy=60.0, cx=32.0, cy=24.0, width=64, height=48)
    with torch.no_grad():
        a = render(scene, camera, background=(0, 0, 0), backend="reference").rgb
        b = render(loaded, camera, background=(0, 0, 0), backend="reference").rgb
        other = render(_scene(n=300, degree=1, seed=1), camera, background=(0, 0, 0), backend="reference").rgb
    mse = float(((a - b) ** 2).mean())
    assert 10 * math.log10(1.0 / max(mse, 1e-12)) > 35.0
    assert float(((a - other) ** 2).mean()) > 20 * mse  # the bound means something: another scene is far off


def test_spz_yz_flip_keeps_the_view_dependent_colour(tmp_path):
    """Converting to the RUB frame flips y and z: SH evaluated at the flipped direction must give the same colour."""
    gen = torch.Generator().manual_seed(3)
    coeffs = torch.randn(50, 16, 3, generator=gen, dtype=torch.float64)
    dirs = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    flipped = coeffs.clone()
    flipped[:, 1:] *= torch.from_numpy(SH_FLIP_YZ)[:, None]
    flip = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    assert torch.allclose(eval_sh(3, coeffs, dirs), eval_sh(3, flipped, dirs * flip), atol=1e-12)
    # ...and the file written with flip_yz stores the flipped values, which read back with flip_yz to the original.
    scene = _scene(n=20, degree=3)
    params = {k: v.detach() for k, v in scene.params.items()}
    plain = decode_spz(encode_spz(params, 3, flip_yz=True))["params"]
    assert torch.allclose(plain["means"][:, 1], -params["means"][:, 1], atol=1e-3)
    back = decode_spz(encode_spz(params, 3, flip_yz=True), flip_yz=True)["params"]
    assert (back["means"] - params["means"]).abs().max() <= 0.5 / 4096 + 1e-6
    assert _rotation_angle(back["quats"], params["quats"]).max() < 0.005


def test_spz_large_scene_uses_fewer_fraction_bits():
    scene = _scene(n=10, degree=0, spread=3000.0)
    params = {k: v.detach() for k, v in scene.params.items()}
    raw = gzip.decompress(encode_spz(params, 0))
    assert raw[13] < 12  # fractional bits in the header
    back = decode_spz(encode_spz(params, 0))["params"]
    assert (back["means"] - params["means"]).abs().max() <= 0.5 / (1 << raw[13]) + 1e-3


def test_ply_header_is_the_layout_splat_tools_parse(tmp_path):
    """SuperSplat and Niantic's loader read: binary_little_endian 1.0, one vertex element, float properties in 3DGS order."""
    scene = _scene(n=5, degree=3)
    path = tmp_path / "scene.ply"
    scene.save_ply(path)
    header = path.read_bytes().split(b"end_header\n")[0].decode("ascii").splitlines()
    assert header[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 5"]
    props = [line.split() for line in header[3:]]
    assert all(p[0] == "property" and p[1] == "float" for p in props)
    names = [p[2] for p in props]
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(45)]
    expected += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert names == expected
    assert path.stat().st_size == len(b"\n".join(h.encode() for h in header)) + len(b"\nend_header\n") + 5 * 62 * 4


def test_sf_export_converts_by_suffix(tmp_path, capsys):
    from scripts.export import ExportConfig, export_scene

    scene = _scene(n=100, degree=3)
    ply = tmp_path / "scene.ply"
    scene.save_ply(ply)
    for suffix in (".spz", ".splat", ".ply"):
        out = export_scene(ExportConfig(scene=ply, to=tmp_path / f"out{suffix}"))
        loaded = load_scene(out)
        assert len(loaded) == 100 and loaded.sh_degree == (0 if suffix == ".splat" else 3)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries
    with pytest.raises(ValueError, match=r"out\.obj.*\.obj"):
        export_scene(ExportConfig(scene=ply, to=tmp_path / "out.obj"))


def test_bad_splat_and_spz_files_name_the_file(tmp_path):
    scene = _scene(n=10, degree=1)
    good_splat = tmp_path / "good.splat"
    save_scene(scene, good_splat)
    truncated = tmp_path / "cut.splat"
    truncated.write_bytes(good_splat.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"cut\.splat.*truncated"):
        read_splat(truncated)
    nan = tmp_path / "nan.splat"
    nan.write_bytes(struct.pack("<3f", float("nan"), 0, 0) + bytes(20))
    with pytest.raises(ValueError, match=r"nan\.splat"):
        load_scene(nan)
    good_spz = tmp_path / "good.spz"
    save_scene(scene, good_spz)
    cases = {
        "cut.spz": (good_spz.read_bytes()[: len(good_spz.read_bytes()) // 2], "truncated or corrupt"),
        "text.spz": (b"hello, not a splat file at all", "no gzip signature"),
        "magic.spz": (gzip.compress(b"XXXX" + bytes(40)), "magic"),
        "short.spz": (gzip.compress(gzip.decompress(good_spz.read_bytes())[:-7]), "truncated or corrupt"),
        "v9.spz": (gzip.compress(struct.pack("<IIIBBBB", 0x5053474E, 9, 0, 0, 12, 0, 0)), "version 9"),
    }
    for name, (payload, message) in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')}.*{message}"):
            load_scene(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="missing.spz"):
        load_scene(tmp_path / "missing.spz")


def test_ply_reader_copies_out_of_the_file_and_rejects_truncation(tmp_path):
    """The PLY reader maps the file for speed: what it returns must not change when the file does."""
    scene = _scene(n=50, degree=1)
    path = tmp_path / "scene.ply"
    scene.save_ply(path)
    loaded = GaussianScene.from_ply(path)
    data = bytearray(path.read_bytes())
    data[-200:] = bytes(200)  # overwrite the tail in place (same inode)
    with open(path, "r+b") as handle:
        handle.write(data)
    assert torch.equal(loaded.params["quats"], scene.params["quats"].detach())
    path.write_bytes(bytes(data[:-100]))
    with pytest.raises(ValueError, match=r"scene\.ply"):
        GaussianScene.from_ply(path)
