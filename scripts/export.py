"""sf-export: convert a scene (PLY, checkpoint, .splat, .spz) to PLY, .splat or .spz, chosen by the output suffix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scenes import load_scene, save_scene

from ._cli import parse_config, run_cli


@dataclass
class ExportConfig:
    """Convert a scene file; the output type follows the suffix of --to (.ply, .splat, .spz)."""

    scene: Path
    """Input: scene.ply, a checkpoint (.pt), .splat or .spz."""
    to: Path
    """Output file: .ply (lossless), .splat (32 bytes per splat, SH degree 0) or .spz (compressed, keeps SH)."""


def export_scene(config: ExportConfig) -> Path:
    """Load, convert and write atomically; returns the output path."""
    if config.to.suffix.lower() not in (".ply", ".splat", ".spz"):
        raise ValueError(f"--to {config.to}: unknown output type {config.to.suffix!r} (expected .ply, .splat or .spz)")
    scene = load_scene(config.scene)
    save_scene(scene, config.to)
    size = config.to.stat().st_size
    print(f"wrote {config.to}: {len(scene)} splats, {size} bytes ({size / max(len(scene), 1):.1f} bytes/splat)")
    return config.to


def entrypoint() -> None:
    run_cli(lambda: export_scene(parse_config(ExportConfig)))


if __name__ == "__main__":
    entrypoint()
