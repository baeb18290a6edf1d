"""sf-demo: the README's main job. Generate the embedded demo scene, train on it, write renders, an MP4 and a
PLY, then serve the trained scene in the browser viewer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from trainers.config import DefaultablePort, TrainConfig, check_port
from trainers.data import DemoSceneConfig, generate_demo_scene
from trainers.strategies import DefaultStrategy

from ._cli import check_output_dir, parse_config, run_cli
from .train import train


@dataclass
class DemoConfig:
    """Procedural scene -> training -> outputs -> viewer, with no download anywhere."""

    scene: DemoSceneConfig = field(default_factory=DemoSceneConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            run_name="demo",
            max_steps=2500,
            # Sized for a few minutes on 2 CPU cores: growth stops at 30k Gaussians and 500 steps before the end.
            strategy=DefaultStrategy(refine_stop=2000, max_gaussians=30_000),
        )
    )
    serve: bool = True
    """Serve the trained scene in the viewer afterwards (Ctrl-C stops)."""
    host: str = "127.0.0.1"
    port: DefaultablePort = None
    """Viewer port (must be free when given); 0 picks a free one. The real port is printed."""

    def __post_init__(self) -> None:
        check_port("port", self.port)


def run_demo(config: DemoConfig):
    # Output folders and an explicit port are checked before the scene is generated and trained.
    check_output_dir(config.scene.output, "--scene.output")
    check_output_dir(config.train.output_dir, "--train.output-dir")
    if config.serve and config.port:
        from viewer.server import check_port_free

        check_port_free(config.host, config.port, "--port")
    print(f"[demo] generating the procedural demo scene in {config.scene.output}")
    data_dir = generate_demo_scene(config.scene)
    trainer = train(dataclasses.replace(config.train, data=data_dir))
    run_dir = trainer.run_dir
    print(f"[demo] outputs: {run_dir / 'scene.ply'}, {run_dir / 'orbit.mp4'}, {run_dir / 'renders'}, {run_dir / 'metrics.json'}")
    if not config.serve:
        return trainer
    from viewer import ViewerServer

    server = ViewerServer(trainer.scene, host=config.host, port=config.port, background=tuple(trainer.background.tolist()))
    print(f"[demo] open {server.url} in a browser; Ctrl-C stops", flush=True)
    server.serve_forever()
    return trainer


def entrypoint() -> None:
    run_cli(lambda: run_demo(parse_config(DemoConfig)))


if __name__ == "__main__":
    entrypoint()
