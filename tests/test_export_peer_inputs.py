"""scripts/export_peer_inputs.py: the fixed benchmark workloads in the layouts a peer trainer reads (shared data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _needs(name: str) -> Path:
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (shared data)")
    return folder


def test_fern_export_names_each_model_image_and_links_images_8(tmp_path):
    from scripts.export_peer_inputs import export_fern
    from trainers.data.colmap_model import read_images_binary

    fern = _needs("llff_fern")
    out = export_fern(fern, tmp_path / "fern")
    names = sorted(im.name for im in read_images_binary(fern / "sparse" / "0" / "images.bin").values())
    links = sorted((out / "images").iterdir())
    assert [p.name for p in links] == names
    assert [p.resolve() for p in links] == sorted(p.resolve() for p in (fern / "images_8").glob("*.png"))
    assert (out / "sparse" / "0" / "points3D.bin").is_file()


def test_lego_export_has_the_training_views_and_the_workloads_initial_points(tmp_path):
    from plyfile import PlyData

    from scripts.export_peer_inputs import export_lego400
    from trainers.data import load_dataset

    lego = _needs("nerf_synthetic_lego_400")
    out = export_lego400(lego, tmp_path / "lego400")
    meta = json.loads((out / "transforms.json").read_text())
    data = load_dataset(lego)
    assert len(meta["frames"]) == len(data.train_views)
    assert all(Path(f["file_path"]).is_file() for f in meta["frames"])
    K = data.train_views[0].camera.K
    assert (meta["w"], meta["h"]) == (data.train_views[0].camera.width, data.train_views[0].camera.height)
    np.testing.assert_allclose([meta["fl_x"], meta["cx"], meta["cy"]], [float(K[0, 0]), float(K[0, 2]), float(K[1, 2])],
                               rtol=1e-5)
    vertex = PlyData.read(str(out / meta["ply_file_path"]))["vertex"]
    points = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)
    assert points.shape == (100_000, 3)
    # the random cube of the trainer's default initialisation: Inria's +-1.3 for NeRF-synthetic, filled throughout
    assert np.abs(points).max() < 1.5 and np.abs(points).max() > 1.2 and points.std(0).min() > 0.6
