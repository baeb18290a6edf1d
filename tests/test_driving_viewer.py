"""Viewer layers for driving logs: LiDAR points and trajectory nodes, fly-through poses, metric depth colours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _driving_fixtures import tiny_street
from render.conventions import viser_pose_to_opencv_w2c
from scenes import GaussianScene
from trainers.data.driving import DrivingInfo
from trainers.data.driving_layout import read_canonical_log
from trainers.data.lidar_geometry import LidarGeometry
from viewer import ViewerServer
from viewer.driving_layers import attach_driving_layers
from viewer.frames import colorize_depth


def test_layers_and_flight_follow_the_recorded_cameras():
    log = read_canonical_log(tiny_street() / "canonical")
    rng = np.random.default_rng(0)
    pts = rng.uniform(-5, 5, (500, 3))
    info = DrivingInfo(log, LidarGeometry(pts, rng.uniform(0, 1, (500, 3)), np.tile([0, 0, 1.0], (500, 1)), None),
                       log.ego_poses[0][:3, 2], [0, 10])
    scene = GaussianScene.from_points(pts[:50], None)
    server = ViewerServer(scene, port=0, verbose=False)
    try:
        layers = attach_driving_layers(server, info)
        assert layers.points is not None and layers.points.visible is False
        assert layers.trajectory is not None and layers.trajectory.visible is True
        poses = layers.flight_poses(4)
        assert len(poses) == 4 * (len(log.frames) - 1) + 1
        for k, frame in ((0, 0), (8, 2), (len(poses) - 1, len(log.frames) - 1)):
            w2c = viser_pose_to_opencv_w2c(*poses[k]).numpy()
            np.testing.assert_allclose(w2c, log.world_to_camera(frame, "cam02"), atol=1e-4)
    finally:
        server.stop()


def test_metric_depth_colours_do_not_depend_on_the_view():
    alpha = np.ones((1, 2, 1), np.float32)
    near_far = colorize_depth(np.array([[[10.0], [40.0]]], np.float32), alpha, (0, 0, 0), (0.0, 80.0))
    shifted = colorize_depth(np.array([[[10.0], [70.0]]], np.float32), alpha, (0, 0, 0), (0.0, 80.0))
    np.testing.assert_allclose(near_far[0, 0], shifted[0, 0])  # 10 m is the same colour in both frames
    relative = colorize_depth(np.array([[[10.0], [70.0]]], np.float32), alpha, (0, 0, 0))
    assert not np.allclose(relative[0, 0], near_far[0, 0])
