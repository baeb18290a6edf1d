"""Driving logs: KITTI raw calibration chain, readers (synthetic fixtures, the shared snippet), canonical layout,
and bad input (missing/malformed calibration, bad scans, unpaired frames, nothing partial written)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from _driving_fixtures import tiny_street
from trainers.data import detect_format
from trainers.data.driving_layout import read_canonical_log, write_canonical_log
from trainers.data.driving_log import read_scan, transform_points
from trainers.data.kitti_raw import read_kitti_raw
from trainers.data.lidar_geometry import lidar_depth, project
from trainers.data.synthetic_street import DATE, DRIVE


@pytest.fixture(scope="module")
def street() -> Path:
    return tiny_street()


def _copy_kitti(street: Path, tmp_path: Path) -> Path:
    root = tmp_path / "kitti"
    shutil.copytree(street / "kitti", root)
    return root


def test_calibration_chain_lands_on_generator_pixel(street):
    """A 3D point the generator hit through pixel (u, v), in the Velodyne frame, projects back to (u, v) through
    the written KITTI calibration as our reader composes it (P_rect_02's offset and R_rect_00 included)."""
    log = read_kitti_raw(street / "kitti")
    cam = log.cameras["cam02"]
    checks = np.load(street / "ground_truth" / "ground_truth.npz")["calib_checks"]
    uv, z = project(transform_points(np.linalg.inv(cam.cam_to_ego), checks[:, 1:4]), cam.K)
    assert (z > 0).all()
    assert np.abs(uv - checks[:, 4:6]).max() < 1e-3
    # dropping camera 2's offset or the rectification would move them by a visible amount
    cam_calib = (street / "kitti" / DATE / "calib_cam_to_cam.txt").read_text()
    assert "R_rect_00" in cam_calib and "P_rect_02" in cam_calib


def test_lidar_depth_z_buffer_keeps_nearest():
    K = np.array([[10.0, 0, 2], [0, 10, 2], [0, 0, 1]])
    pts = np.array([[0.0, 0, 5], [0, 0, 3], [0, 0, 90], [0, 0, -4]])
    depth = lidar_depth(pts, K, 4, 4)
    assert depth[2, 2] == 3.0 and (depth > 0).sum() == 1


def test_detect_kitti_root_date_and_drive_folders(street):
    root = street / "kitti"
    for path in (root, root / DATE, root / DATE / DRIVE, street / "canonical"):
        assert detect_format(path) == "driving"


def test_canonical_roundtrip_and_kitti_agree(street, tmp_path):
    canonical = read_canonical_log(street / "canonical")
    kitti = read_kitti_raw(street / "kitti")
    assert canonical.ego_poses is not None and kitti.ego_poses is None  # KITTI layout: no OXTS
    assert [f.frame_id for f in canonical.frames] == [f.frame_id for f in kitti.frames]
    np.testing.assert_allclose(canonical.cameras["cam02"].cam_to_ego, kitti.cameras["cam02"].cam_to_ego, atol=1e-9)
    np.testing.assert_allclose(canonical.scan(3), kitti.scan(3), atol=1e-6)
    out = write_canonical_log(canonical, tmp_path / "copy")
    again = read_canonical_log(out)
    np.testing.assert_allclose(np.stack(again.ego_poses), np.stack(canonical.ego_poses), atol=1e-9)
    assert len(again.frames) == len(canonical.frames)


def test_missing_and_malformed_calibration(street, tmp_path):
    root = _copy_kitti(street, tmp_path)
    velo = root / DATE / "calib_velo_to_cam.txt"
    text = velo.read_text()
    velo.write_text(text.replace("T:", "X:"))
    with pytest.raises(ValueError, match=r"calib_velo_to_cam.txt: field 'T' is missing"):
        read_kitti_raw(root)
    velo.write_text(text.replace("R:", "R: oops"))
    with pytest.raises(ValueError, match=r"calib_velo_to_cam.txt: line \d+: field 'R' is not numeric"):
        read_kitti_raw(root)
    velo.unlink()
    with pytest.raises(FileNotFoundError, match="calib_velo_to_cam.txt: KITTI calibration file is missing"):
        read_kitti_raw(root)
    cam = root / DATE / "calib_cam_to_cam.txt"
    cam.write_text(cam.read_text().replace("P_rect_02: ", "P_rect_02: 1 2 "))
    (root / DATE / "calib_velo_to_cam.txt").write_text(text)
    with pytest.raises(ValueError, match="field 'P_rect_02' must have 12 finite numbers"):
        read_kitti_raw(root)


def test_bad_scans_name_file_and_frame(street, tmp_path):
    root = _copy_kitti(street, tmp_path)
    scan = root / DATE / DRIVE / "velodyne_points" / "data" / "0000000004.bin"
    scan.write_bytes(scan.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"0000000004.bin \(frame 4\): LiDAR scan has \d+ bytes, not a multiple of 16"):
        read_kitti_raw(root).scan(4)
    points = np.ones((10, 4), np.float32)
    points[3, 1] = np.nan
    points.tofile(scan)
    with pytest.raises(ValueError, match=r"\(frame 4\): LiDAR scan has 1 of 10 points with NaN or Inf"):
        read_scan(scan, 4)


def test_unpaired_frames_are_dropped_and_reported(street, tmp_path):
    root = _copy_kitti(street, tmp_path)
    (root / DATE / DRIVE / "velodyne_points" / "data" / "0000000002.bin").unlink()
    (root / DATE / DRIVE / "image_02" / "data" / "0000000005.png").unlink()
    log = read_kitti_raw(root)
    assert [f.frame_id for f in log.frames if f.frame_id in (2, 5)] == []
    note = " ".join(log.notes)
    assert "1 image(s) without a LiDAR scan (frames 2)" in note and "1 scan(s) without an image (frames 5)" in note


def test_failed_canonical_write_leaves_nothing(street, tmp_path):
    log = read_canonical_log(street / "canonical")
    log.frames[3].images["cam02"] = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError):
        write_canonical_log(log, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_shared_kitti_snippet_reader(shared_data):
    root = shared_data / "kitti_raw_2011_09_26_snippet"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    log = read_kitti_raw(root)
    assert len(log.frames) == 30 and log.frames[1].frame_id == 2 and log.ego_poses is None
    cam = log.cameras["cam02"]
    assert (cam.width, cam.height) == (1242, 375)
    t = np.linalg.inv(cam.cam_to_ego)
    # camera 2's rectified frame sits ~6 cm from camera 0's: the P_rect_02 offset is part of the chain
    from trainers.data.kitti_raw import read_calib_file

    cc = read_calib_file(root / "2011_09_26" / "calib_cam_to_cam.txt")
    vc = read_calib_file(root / "2011_09_26" / "calib_velo_to_cam.txt")
    rect_tr = np.eye(4)
    rect_tr[:3, :3] = vc["R"].reshape(3, 3)
    rect_tr[:3, 3] = vc["T"]
    rect = np.eye(4)
    rect[:3, :3] = cc["R_rect_00"].reshape(3, 3)
    offset = t @ np.linalg.inv(rect @ rect_tr)
    np.testing.assert_allclose(offset[:3, :3], np.eye(3), atol=1e-9)
    np.testing.assert_allclose(offset[:3, 3], [0.0598, -0.0004, 0.0027], atol=2e-4)
    scan = log.scan(0)
    assert scan.shape[1] == 4 and len(scan) > 50_000 and np.linalg.norm(scan[:, :3], axis=1).min() >= 2.5
    depth = lidar_depth(transform_points(t, scan[:, :3]), cam.K, cam.width, cam.height)
    assert 0.02 < (depth > 0).mean() < 0.5  # the lower image is covered by returns, the sky is not
