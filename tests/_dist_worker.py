"""Process entry points for tests/test_distributed.py (spawned children import this module by name)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional


def tiny_config(data: Path, output_dir: Path, run_name: str, **overrides):
    """A short run with densification active from the first steps, capped so the count stays small."""
    from trainers.config import TrainConfig
    from trainers.strategies import DefaultStrategy

    strategy = DefaultStrategy(refine_start=4, refine_every=4, grow_grad2d=2e-5, reset_every=100_000, max_gaussians=1400)
    settings = dict(
        data=data, output_dir=output_dir, run_name=run_name, max_steps=24, sh_degree=1, sh_degree_interval=8,
        progress=False, video=False, num_test_renders=1, strategy=strategy, backend="cpu", device="cpu",
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def train_rank(rank: int, world: int, port: int, data: str, out: str, overrides: dict, fault: Optional[tuple] = None) -> None:
    """One rank of a torchrun-style job: env:// rendezvous on 127.0.0.1, then train; writes rank<r>.pt or rank<r>.err."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch

    torch.set_num_threads(1)
    from trainers.data import load_dataset
    from trainers.trainer import Trainer

    out_dir = Path(out)
    try:
        trainer = Trainer(tiny_config(Path(data), out_dir, "dist", **overrides), load_dataset(data))
        if fault is not None:  # ("exit", step): crash there; ("hang", step): stop responding there
            kind, at_step = fault

            def misbehave(_trainer, step, _stats):
                if step >= at_step and kind == "exit":
                    os._exit(3)  # a crash: no clean-up, no goodbye to the other rank
                if step >= at_step and kind == "hang":
                    time.sleep(3600)

            trainer.callbacks.append(misbehave)
        trainer.train()
        torch.save({"scene": trainer.scene.state(), "step": trainer.step}, out_dir / f"rank{rank}.pt")
    except Exception as exc:  # report to the test, then fail like a real rank would
        (out_dir / f"rank{rank}.err").write_text(f"{type(exc).__name__}: {exc}")
        # As sf-train does after a failed collective (scripts/_cli.py): exit at once, without the process group's
        # teardown, which can abort (SIGABRT) when the peer is dead.
        os._exit(1)
