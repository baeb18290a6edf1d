"""sf-view: open a splatforge scene (.ply or .pt checkpoint) in the browser viewer."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

from trainers.config import DefaultablePort, check_background, check_port, check_range

from ._cli import parse_config, run_cli


@dataclass
class ViewConfig:
    """Serve a scene to the browser. Open the printed URL; Ctrl-C stops."""

    scene: Path
    """Scene file: 3DGS .ply or a splatforge .pt checkpoint."""
    host: str = "127.0.0.1"
    """Address to bind (use 0.0.0.0 to serve other machines)."""
    port: DefaultablePort = None
    """Port to bind (must be free when given); 0 picks a free one. The real port is printed."""
    background: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Initial background colour, RGB in [0, 1]."""
    max_resolution: int = 1024
    """Initial cap on the longer side of full-resolution frames, in pixels."""
    backend: Literal["auto", "cuda", "cpu", "reference"] = "auto"
    """Rasterizer backend."""
    meshes: Tuple[Path, ...] = ()
    """Mesh files (GLB/GLTF/OBJ/PLY) to place in the scene at their own coordinates (Meshes panel)."""
    field: Optional[Path] = None
    """A radiance field (field.pt from `sf-train --model nerf`) shown together with the splat scene (Field panel)."""
    field_mode: Literal["volume", "background"] = "volume"
    """How the field composites with the splats: a volume among them, or only behind them (sky / far field)."""
    align: Optional[Path] = None
    """JSON file with a 4x4 world-from-field matrix placing the field (a singular matrix is an error)."""
    save_field: Path = Path("edited_field.pt")
    """Where the Field panel's "Save field" writes the edited field."""

    def __post_init__(self) -> None:
        check_port("port", self.port)
        check_background("background", self.background)
        check_range("max_resolution", self.max_resolution, 16)


def describe(scene) -> str:
    if hasattr(scene, "render_rays"):
        return "a radiance field"
    if hasattr(scene, "field"):
        return f"{len(scene.splats):,} Gaussians and a radiance field ({scene.field_mode})"
    return f"{len(scene):,} Gaussians"


def with_field(scene, config: ViewConfig):
    """The scene, or splats + `config.field` as a HybridScene, placed by `config.align`."""
    import json

    from scenes import load_scene
    from scenes.hybrid import HybridScene

    field = scene if hasattr(scene, "render_rays") else None
    if config.field is not None:
        if field is not None:
            raise ValueError(f"{config.scene} is itself a field; pass the splat scene as --scene")
        field = load_scene(config.field)
        if not hasattr(field, "render_rays"):
            raise ValueError(f"{config.field}: not a radiance field (train one with sf-train --model nerf)")
        scene = HybridScene(scene, field, config.field_mode)
    if config.align is not None:
        if field is None:
            raise ValueError("--align places a field: give one with --field (or a field as --scene)")
        field.edits.set_transform(json.loads(Path(config.align).read_text()))
    return scene


def main(config: ViewConfig) -> int:
    """Load the scene, serve it until Ctrl-C; returns the exit code."""
    from scenes import load_scene

    if not config.scene.exists():
        print(f"sf-view: error: scene file not found: {config.scene}", file=sys.stderr)
        return 2
    try:
        scene = load_scene(config.scene)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"sf-view: error: cannot load scene: {exc}", file=sys.stderr)
        return 2
    try:
        scene = with_field(scene, config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"sf-view: error: cannot load the field: {exc}", file=sys.stderr)
        return 2
    print(f"loaded {config.scene} ({describe(scene)})", flush=True)
    from scenes.meshes import MeshLoadError, load_mesh

    try:
        meshes = [load_mesh(p) for p in config.meshes]
    except MeshLoadError as exc:
        print(f"sf-view: error: cannot load mesh: {exc}", file=sys.stderr)
        return 2

    from viewer import ViewerServer
    from viewer.server import PortInUseError

    try:
        server = ViewerServer(
            scene,
            host=config.host,
            port=config.port,
            background=config.background,
            max_resolution=config.max_resolution,
            backend=config.backend,
        )
    except PortInUseError as exc:
        print(f"sf-view: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sf-view: error: cannot start the server on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 2
    server.field_save_path = config.save_field
    if meshes:
        from viewer.mesh_panel import mesh_layer

        for mesh in meshes:
            mesh_layer(server).add(mesh)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopping viewer", flush=True)
    finally:
        server.stop()
    return 0


def entrypoint() -> None:
    sys.exit(run_cli(lambda: main(parse_config(ViewConfig))))


if __name__ == "__main__":
    entrypoint()
