"""Driving-log layers in the viewer: accumulated LiDAR points and the ego trajectory (toggleable), and a button
that flies each browser's camera along the recorded trajectory (through the first camera's poses)."""

from __future__ import annotations

import threading
import time
from typing import Dict

import numpy as np

from render.conventions import opencv_w2c_to_viser_pose

from .frames import METRIC_DEPTH_MAX

MAX_LAYER_POINTS = 200_000


class DrivingLayers:
    """Scene nodes shared by all clients plus a "Driving log" GUI folder per client."""

    def __init__(self, server, info, fly_fps: float = 20.0, fly_seconds_per_frame: float = 0.25):
        self.server = server
        self.info = info
        self.fly_fps = fly_fps
        self.fly_seconds_per_frame = fly_seconds_per_frame
        scene = server.viser.scene
        geometry = info.geometry
        self.points = self.trajectory = None
        if geometry is not None:
            pts, rgb = geometry.points, geometry.colors
            if len(pts) > MAX_LAYER_POINTS:
                keep = np.random.default_rng(0).choice(len(pts), MAX_LAYER_POINTS, replace=False)
                pts, rgb = pts[keep], rgb[keep]
            self.points = scene.add_point_cloud("/driving/lidar", pts.astype(np.float32),
                                                (np.clip(rgb, 0, 1) * 255).astype(np.uint8), point_size=0.05,
                                                visible=False)
        traj = info.trajectory.astype(np.float32)
        if len(traj) > 1:
            segments = np.stack([traj[:-1], traj[1:]], axis=1)
            self.trajectory = scene.add_line_segments("/driving/trajectory", segments, (255, 140, 0),
                                                      thickness=4.0, thickness_units="screen", visible=True)
        log = info.log
        camera = next(iter(log.cameras))
        self.camera_poses = [log.world_to_camera(i, camera) for i in range(len(log.frames))]
        self._flights: Dict[int, threading.Event] = {}
        server.viser.on_client_connect(self._add_gui)

    def _add_gui(self, client) -> None:
        gui = client.gui
        with gui.add_folder("Driving log"):
            lidar = gui.add_checkbox("LiDAR points", initial_value=False, disabled=self.points is None)
            trajectory = gui.add_checkbox("Ego trajectory", initial_value=True, disabled=self.trajectory is None)
            fly = gui.add_button("Fly along trajectory")
            gui.add_markdown(f"{len(self.info.log.frames)} frames, poses: {self.info.log.pose_source}. Render mode "
                             f"'Depth (metric)': red 0 m to blue {METRIC_DEPTH_MAX:g} m.")

        @lidar.on_update
        def _(_event) -> None:
            if self.points is not None:
                self.points.visible = lidar.value

        @trajectory.on_update
        def _(_event) -> None:
            if self.trajectory is not None:
                self.trajectory.visible = trajectory.value

        @fly.on_click
        def _(_event) -> None:
            self.fly(client)

    def flight_poses(self, steps_per_frame: int):
        """(wxyz, position) viser poses interpolated along the recorded camera poses."""
        poses = [opencv_w2c_to_viser_pose(w2c) for w2c in self.camera_poses]
        out = []
        for (q0, p0), (q1, p1) in zip(poses[:-1], poses[1:]):
            if np.dot(q0, q1) < 0:
                q1 = -q1
            for k in range(steps_per_frame):
                t = k / steps_per_frame
                q = (1 - t) * q0 + t * q1
                out.append((q / np.linalg.norm(q), (1 - t) * p0 + t * p1))
        out.append(poses[-1])
        return out

    def fly(self, client) -> threading.Thread:
        """Move `client`'s camera along the trajectory in a background thread (a second click restarts it)."""
        previous = self._flights.get(client.client_id)
        if previous is not None:
            previous.set()
        stop = threading.Event()
        self._flights[client.client_id] = stop
        steps = max(1, int(round(self.fly_fps * self.fly_seconds_per_frame)))

        def run() -> None:
            for wxyz, position in self.flight_poses(steps):
                if stop.is_set():
                    return
                with client.atomic():
                    client.camera.wxyz = wxyz
                    client.camera.position = position
                time.sleep(1.0 / self.fly_fps)

        thread = threading.Thread(target=run, daemon=True, name=f"fly-{client.client_id}")
        thread.start()
        return thread


def attach_driving_layers(server, info) -> DrivingLayers:
    """Add the LiDAR / trajectory layers and the fly-through button for a driving log's DrivingInfo."""
    return DrivingLayers(server, info)
