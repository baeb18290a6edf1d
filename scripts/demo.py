"""sf-demo: the README's main job. Generate the embedded demo scene, train on it, write renders, an MP4 and a
PLY, then serve the trained scene in the browser viewer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from trainers.config import DefaultablePort, TrainConfig, check_port
from trainers.data import DemoSceneConfig, generate_demo_scene
from trainers.data.dynamic_scene import DynamicSceneConfig, generate_dynamic_scene
from trainers.data.synthetic_street import SyntheticStreetConfig, canonical_root, generate_synthetic_street
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
    dynamic: bool = False
    """Use the procedural dynamic scene (moving objects, a D-NeRF folder with per-frame times) and train a 4D
    scene on it (`dynamic_train`); the MP4 orbits and plays through time, the viewer gets a time slider."""
    dynamic_scene: DynamicSceneConfig = field(default_factory=DynamicSceneConfig)
    dynamic_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            run_name="demo_dynamic",
            model="gaussian4d",
            max_steps=3000,
            max_seconds=300.0,  # a cap for slow or shared machines
            sh_degree=1,
            # Sized for a few minutes on 2 CPU cores at 96x72: growth stops at 20k Gaussians.
            strategy=DefaultStrategy(refine_stop=2000, max_gaussians=20_000),
        )
    )
    driving: bool = False
    """Use the synthetic driving log (a procedural street seen by a camera and a 64-beam LiDAR,
    trainers/data/synthetic_street.py) and train a LiDAR-camera scene on it (`driving_train`); the viewer shows
    the LiDAR points and the ego trajectory as layers and can fly along the trajectory."""
    driving_scene: SyntheticStreetConfig = field(default_factory=SyntheticStreetConfig)
    driving_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            run_name="demo_driving",
            max_steps=2000,
            max_seconds=300.0,  # a cap for slow or shared machines
            sh_degree=1,
            strategy=DefaultStrategy(refine_stop=1600, max_gaussians=150_000),
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
    if config.dynamic and config.driving:
        raise ValueError("--dynamic and --driving are different demos: pass one of them")
    if config.driving:
        check_output_dir(config.driving_scene.output, "--driving-scene.output")
        check_output_dir(config.driving_train.output_dir, "--driving-train.output-dir")
    elif config.dynamic:
        check_output_dir(config.dynamic_scene.output, "--dynamic-scene.output")
        check_output_dir(config.dynamic_train.output_dir, "--dynamic-train.output-dir")
    else:
        check_output_dir(config.scene.output, "--scene.output")
        check_output_dir(config.train.output_dir, "--train.output-dir")
    if config.serve and config.port:
        from viewer.server import check_port_free

        check_port_free(config.host, config.port, "--port")
    if config.driving:
        print(f"[demo] generating the synthetic driving log in {config.driving_scene.output}")
        data_dir = canonical_root(generate_synthetic_street(config.driving_scene))
        trainer = train(dataclasses.replace(config.driving_train, data=data_dir))
    elif config.dynamic:
        print(f"[demo] generating the procedural dynamic scene in {config.dynamic_scene.output}")
        data_dir = generate_dynamic_scene(config.dynamic_scene)
        trainer = train(dataclasses.replace(config.dynamic_train, data=data_dir))
    else:
        print(f"[demo] generating the procedural demo scene in {config.scene.output}")
        data_dir = generate_demo_scene(config.scene)
        trainer = train(dataclasses.replace(config.train, data=data_dir))
    run_dir = trainer.run_dir
    print(f"[demo] outputs: {run_dir / 'scene.ply'}, {run_dir / 'orbit.mp4'}, {run_dir / 'renders'}, {run_dir / 'metrics.json'}")
    if not config.serve:
        return trainer
    from viewer import ViewerServer

    server = ViewerServer(trainer.scene, host=config.host, port=config.port, background=tuple(trainer.background.tolist()))
    if trainer.data.driving is not None:
        from viewer.driving_layers import attach_driving_layers

        attach_driving_layers(server, trainer.data.driving)
    print(f"[demo] open {server.url} in a browser; Ctrl-C stops", flush=True)
    server.serve_forever()
    return trainer


def entrypoint() -> None:
    run_cli(lambda: run_demo(parse_config(DemoConfig)))


if __name__ == "__main__":
    entrypoint()
