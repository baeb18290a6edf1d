"""sf-train: train a Gaussian scene on a dataset folder and write a run folder."""

from __future__ import annotations

import json
import os
import sys

from trainers.config import TrainConfig
from trainers.data import load_dataset
from trainers.device import describe_device, resolve_device
from trainers.trainer import Trainer

from ._cli import check_output_dir, parse_config, run_cli


def attach_viewer(trainer: Trainer):
    """Serve the training scene live: steps hold the viewer's scene lock and yield to camera moves."""
    import time

    from viewer import ViewerServer
    from viewer.training_control import TrainingControl

    cfg = trainer.config
    server = ViewerServer(trainer.scene, host=cfg.viewer_host, port=cfg.viewer_port,
                          background=tuple(trainer.background.tolist()), port_option="--viewer-port")
    control = TrainingControl(server)
    server.control = control
    trainer.step_guard = lambda: server.scene_lock
    started = {}

    def before(_trainer: Trainer) -> None:
        control.before_step()
        started["t"] = time.perf_counter()
        if server.scene is not _trainer.scene:  # densification may have replaced the scene object's tensors only
            server.set_scene(_trainer.scene)

    def after(_trainer: Trainer, step: int, stats) -> None:
        control.after_step(step, stats, time.perf_counter() - started.get("t", time.perf_counter()))

    trainer.before_step.append(before)
    trainer.callbacks.append(after)
    return server


def train(config: TrainConfig, keep_serving: bool = True) -> Trainer:
    """Load the data, train, print the metrics; with `config.viewer`, serve live and (if `keep_serving`) after."""
    # Everything the user can get wrong outside the data fails before the dataset loads. Under torchrun only rank 0
    # writes the run folder, so only it checks it: probes from every rank at once race on the folders they make and
    # remove (one rank's mkdir failing another's with "File exists"); a failing rank 0 stops the others.
    if os.environ.get("RANK", "0") == "0":
        check_output_dir(config.output_dir, "--output-dir")
    resolve_device(config.device)
    if config.viewer and config.viewer_port:
        from viewer.server import check_port_free

        check_port_free(config.viewer_host, config.viewer_port, "--viewer-port")
    options = {"skip_missing_frames": True} if config.skip_missing_frames else {}
    data = load_dataset(config.data, downscale=config.downscale, background=config.background, **options)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        for note in data.notes:
            print(f"[data] {note}")
        print(f"[data] {len(data.train_views)} train / {len(data.test_views)} test views from {data.source}")
    trainer = Trainer(config, data)
    main = trainer.dist.is_main
    if main:
        print(f"[train] model {trainer.model} ({trainer.model_reason})")
        if trainer.time_filter_note is not None and config.resume is None:
            print(f"[train] temporal filter {trainer.time_filter_note}")
        if trainer.static_note is not None and config.resume is None:
            print(f"[train] static rows: {trainer.static_note}")
        if trainer.rigidity_note is not None and config.resume is None:
            print(f"[train] velocity rigidity {trainer.rigidity_note}")
        what = (f"radiance field ({trainer.scene.num_parameters()} parameters)" if trainer.model == "nerf"
                else f"{len(trainer.scene)} Gaussians")
        print(f"[train] {what} on {describe_device(trainer.device)}, run folder {trainer.run_dir}")
    server = attach_viewer(trainer) if config.viewer and main else None
    try:
        metrics = trainer.train()
    except BaseException:
        if server is not None:
            server.control.stop()
            server.stop()
        raise
    if not main:
        return trainer
    print(
        f"[eval] {metrics['split']}: PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, "
        f"{metrics['steps']} steps in {metrics['train_seconds']:.1f} s ({metrics['steps_per_second']:.1f} steps/s)"
    )
    if "gabor_active_terms" in metrics:
        print(f"[gabor] {int(metrics['gabor_active_terms'])} terms active "
              f"({metrics['gabor_terms_per_primitive']:.2f} per primitive of {int(metrics['gabor_num_terms'])})")
    if metrics.get("depth_abs_rel") is not None:  # driving logs: depth against the held-out frames' LiDAR
        print(f"[eval] depth vs LiDAR (1-80 m): AbsRel {metrics['depth_abs_rel']:.4f}, RMSE {metrics['depth_rmse']:.3f} m, "
              f"delta<1.25 {metrics['depth_delta1']:.4f}")
    print(json.dumps({"run_dir": str(trainer.run_dir)}))
    if server is not None:
        server.control.finished(f"training finished: test PSNR {metrics['psnr']:.2f} dB")
        server.control.stop()
        trainer.viewer = server
        if keep_serving:
            print(f"[view] training finished; still serving {server.url} (Ctrl-C stops)", flush=True)
            server.serve_forever()
    return trainer


def entrypoint() -> None:
    """sf-train; under torchrun (`torchrun --nproc-per-node N -m scripts.train --distributed ...`) one per rank."""
    from trainers.distributed import DistributedError

    try:
        run_cli(lambda: train(parse_config(TrainConfig)))
    except DistributedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    entrypoint()
