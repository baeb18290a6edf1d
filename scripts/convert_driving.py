"""Convert a driving log (KITTI raw root / date / drive folder, or a canonical log) to the canonical layout, with
ego poses from LiDAR odometry when the source has none (the trajectory is printed and written to ego_pose/).

    python -m scripts.convert_driving --source ../shared/data/kitti_raw_2011_09_26_snippet --output outputs/kitti_log
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trainers.data.driving import read_driving_log
from trainers.data.driving_layout import write_canonical_log
from trainers.data.lidar_odometry import OdometryConfig, with_odometry

from ._cli import check_output_dir, parse_config, run_cli


@dataclass
class ConvertDrivingConfig:
    """Driving log -> canonical layout (images/, lidar/, ego_pose/, extrinsics/, intrinsics/, driving_log.json)."""

    source: Path
    output: Path
    odometry: OdometryConfig = field(default_factory=OdometryConfig)


def convert(config: ConvertDrivingConfig) -> Path:
    check_output_dir(config.output.parent, "--output")
    log = with_odometry(read_driving_log(config.source), config.odometry)
    for note in log.notes:
        print(f"[log] {note}")
    out = write_canonical_log(log, config.output)
    print(f"[log] wrote {len(log.frames)} frames, cameras {', '.join(log.cameras)}, poses ({log.pose_source}) to {out}")
    return out


def entrypoint() -> None:
    run_cli(lambda: convert(parse_config(ConvertDrivingConfig)))


if __name__ == "__main__":
    entrypoint()
