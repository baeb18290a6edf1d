"""LiDAR odometry and LiDAR geometry on the synthetic street (exact ground truth)."""

from __future__ import annotations

import numpy as np
import pytest

from _driving_fixtures import tiny_street
from trainers.data.driving import load_driving
from trainers.data.driving_layout import read_canonical_log
from trainers.data.kitti_raw import read_kitti_raw
from trainers.data.lidar_odometry import OdometryConfig, estimate_poses, with_odometry


@pytest.fixture(scope="module")
def street():
    return tiny_street()


def test_odometry_drift_under_one_percent_of_path(street):
    truth = np.load(street / "ground_truth" / "ground_truth.npz")["ego_poses"]
    path = float(np.linalg.norm(np.diff(truth[:, :3, 3], axis=0), axis=1).sum())
    trajectory = estimate_poses(read_kitti_raw(street / "kitti"))  # auto: kiss-icp and open3d, best agreement
    est = np.stack(trajectory.poses)
    drift = np.linalg.norm(est[:, :3, 3] - truth[:, :3, 3], axis=1).max()
    assert path > 15 and drift < 0.01 * path, (trajectory.summary(), drift)
    assert abs(trajectory.length - path) < 0.01 * path
    assert "scan agreement" in trajectory.method


def test_odometry_poses_are_cached_and_reported(street, tmp_path, monkeypatch):
    monkeypatch.setenv("SPLATFORGE_CACHE", str(tmp_path))
    log = read_kitti_raw(street / "kitti")
    config = OdometryConfig(method="open3d")
    first = with_odometry(log, config)
    assert list((tmp_path / "odometry").glob("*.json")) and "path" in first.notes[-1]
    second = with_odometry(log, config)
    assert "cached" in second.notes[-1]
    np.testing.assert_allclose(np.stack(first.ego_poses), np.stack(second.ego_poses))


def test_static_log_is_refused_with_measured_motion(tmp_path):
    static = tiny_street(num_frames=4, step_m=0.0, lidar_azimuths=360, width=32, height=10)
    with pytest.raises(ValueError, match=r"too static for LiDAR odometry: the car moved 0\.\d\d m over 4 frames"):
        estimate_poses(read_kitti_raw(static / "kitti"), OdometryConfig(method="open3d"))
    with pytest.raises(ValueError, match="too short for LiDAR odometry"):
        estimate_poses(read_kitti_raw(static / "kitti"), OdometryConfig(min_frames=5))


def test_mesh_depth_matches_ground_truth_and_split_is_every_tenth(street):
    data = load_driving(street / "canonical")
    truth = np.load(street / "ground_truth" / "ground_truth.npz")["depth"]
    errors = []
    for view in data.train_views + data.test_views:
        frame = int(view.name.split("_")[0])
        mesh, gt = view.depth[..., 0].numpy(), truth[frame]
        both = (mesh > 0) & (gt > 1) & (gt < 60)
        assert both.mean() > 0.4  # the mesh covers the road, kerbs, cars and lower facades
        errors.append(np.median(np.abs(mesh[both] - gt[both]) / gt[both]))
        lidar = view.lidar_depth[..., 0].numpy()
        hit = (lidar > 0) & (gt > 0)
        assert np.median(np.abs(lidar[hit] - gt[hit]) / gt[hit]) < 0.01  # z-buffered LiDAR depth is exact
    assert np.median(errors) < 0.02, errors
    assert [v.name for v in data.test_views] == ["000000_cam02", "000010_cam02"]
    assert any("every 10th frame held out (frames 0, 10)" in n for n in data.notes)
    assert data.point_normals is not None and len(data.points) == len(data.point_normals)
