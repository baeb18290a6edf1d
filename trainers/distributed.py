"""Data-parallel training over torch.distributed (gloo on CPUs, NCCL on GPUs), as hooks the Trainer calls.

Every rank holds the whole scene. Each step all ranks draw the same global batch of view indices and each renders its
own slice; gradients are averaged across ranks, and the densification statistics gathered from each view's means2d
gradient are summed across ranks every step, so every rank keeps identical parameters, statistics and random state
and applies the identical densification. Only rank 0 writes the run folder.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

# Step-counted schedule fields scaled by 1 / global batch (each step sees `batch` views), on the config and strategy
# (plus the coarse-to-fine steps). Output cadences (eval_every, eval_steps, checkpoint_every) stay as given.
CONFIG_STEP_FIELDS = ("max_steps", "sh_degree_interval")
STRATEGY_STEP_FIELDS = ("refine_start", "refine_stop", "refine_every", "reset_every")
# Fields that may legitimately differ between ranks (the rest is hashed and compared at start-up).
RANK_LOCAL_FIELDS = ("device", "progress", "viewer", "viewer_host", "viewer_port")


class DistributedError(RuntimeError):
    """A collective failed: another rank died, timed out or disagrees."""


@dataclass
class DistContext:
    """This process's place in the job; world_size 1 means no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout_s: float = 600.0
    broken: bool = False
    """A collective failed: the group is left to process exit (destroying it with a dead peer can abort)."""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ----- collectives (each wraps failures into one clear error) ---------------------------------------------
    def _run(self, what: str, fn):
        try:
            return fn()
        except Exception as exc:  # gloo/NCCL raise RuntimeError (or DistBackendError) on a dead or hung peer
            self.broken = True
            raise DistributedError(
                f"rank {self.rank} of {self.world_size}: {what} failed; another rank probably exited, crashed or "
                f"hung (process-group timeout {self.timeout_s:g} s): {type(exc).__name__}: {exc}"
            ) from exc

    def average_gradients(self, params: Sequence[torch.nn.Parameter], step: int) -> None:
        """Average .grad of `params` over ranks in one flattened all-reduce.

        A parameter without a gradient (e.g. SH bands not yet active) has none on every rank, since all ranks build
        the same graph; it keeps None, so Adam skips it exactly as in a single process.
        """
        if not self.enabled:
            return
        params = [p for p in params if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self._run(f"gradient all-reduce at step {step}", lambda: dist.all_reduce(flat, op=dist.ReduceOp.SUM))
        flat /= self.world_size
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def sum_(self, tensors: List[torch.Tensor], what: str) -> None:
        """Sum each tensor over ranks, in place (one flattened all-reduce)."""
        if not self.enabled or not tensors:
            return
        flat = torch.cat([t.reshape(-1).float() for t in tensors])
        self._run(what, lambda: dist.all_reduce(flat, op=dist.ReduceOp.SUM))
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def any(self, flag: bool, what: str, device: torch.device) -> bool:
        """True on every rank when `flag` is True on any rank (so all ranks stop together)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        self._run(what, lambda: dist.all_reduce(value, op=dist.ReduceOp.MAX))
        return bool(value.item() > 0)

    def check_same_config(self, config) -> str:
        """Hash the config (rank-local fields excluded) and compare across ranks; a mismatch is a clear error."""
        digest = config_hash(config)
        if not self.enabled:
            return digest
        gathered: List[Optional[str]] = [None] * self.world_size
        self._run("config hash exchange at start-up", lambda: dist.all_gather_object(gathered, digest))
        if len(set(gathered)) > 1:
            listing = ", ".join(f"rank {r}: {h[:12]}" for r, h in enumerate(gathered))
            raise DistributedError(
                f"rank {self.rank}: the ranks were started with different training configs ({listing}); "
                "every rank must get the same arguments"
            )
        return digest

    def barrier(self, what: str) -> None:
        if self.enabled:
            self._run(what, dist.barrier)

    def shutdown(self) -> None:
        """Tear the process group down after a clean run, every rank together: a barrier first, so no rank destroys
        its group while rank 0 still writes the run's outputs (a clean-clone CI run saw a non-main rank that had gone
        straight to teardown abort with SIGABRT in gloo; the usual remedy, a barrier before destroy_process_group).
        After a failed collective, or if that barrier fails (a peer died meanwhile), the group is left alone: with a
        dead peer gloo's teardown can abort the process before the clear error reaches the user."""
        if not (self.enabled and dist.is_initialized() and not self.broken):
            return
        try:
            dist.barrier()
        except Exception:  # a peer is gone: its own error says why; this rank's run already finished cleanly
            self.broken = True
            return
        dist.destroy_process_group()


def config_hash(config) -> str:
    """SHA-256 of the config as JSON, without fields that may differ per rank."""
    payload = dataclasses.asdict(config)
    for name in RANK_LOCAL_FIELDS:
        payload.pop(name, None)
    payload["strategy_type"] = type(config.strategy).__name__
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def init_distributed(requested: bool, device_name: str, timeout_s: float) -> DistContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment).

    Without those variables: a single-process context, or a clear error when `requested` (--distributed).
    gloo when training on the CPU, NCCL on CUDA (each rank on cuda:LOCAL_RANK).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "RANK" not in os.environ or world <= 1:
        if requested and "RANK" not in os.environ:
            raise ValueError(
                "--distributed needs the process-group variables torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR, "
                "MASTER_PORT); start it as: torchrun --nproc-per-node N -m scripts.train --distributed ..."
            )
        return DistContext(timeout_s=timeout_s)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(seconds=timeout_s),
            rank=rank,
            world_size=world,
        )
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, timeout_s=timeout_s)


def device_for_rank(ctx: DistContext, device_name: str) -> str:
    """With NCCL each rank trains on its own GPU: "auto"/"cuda" become cuda:LOCAL_RANK."""
    if ctx.enabled and device_name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{ctx.local_rank}"
    return device_name


def scale_schedule(config, global_batch: int, scale: bool = True) -> Tuple[object, List[str]]:
    """Return (config for `global_batch` views per step, notes for the log).

    Step-counted schedules are divided by the batch (the run sees the same number of views), learning rates are
    multiplied by sqrt(batch) (Adam's square-root scaling, as gsplat does).
    """
    if global_batch <= 1 or not scale:
        return config, []
    notes = [f"global batch {global_batch} views per step: step schedules / {global_batch}, learning rates x sqrt({global_batch})"]
    changes = {}
    for name in CONFIG_STEP_FIELDS:
        old = getattr(config, name)
        changes[name] = max(1, int(round(old / global_batch)))
        notes.append(f"{name} {old} -> {changes[name]}")
    if config.coarse_to_fine:
        steps: List[int] = []
        for step in config.coarse_to_fine:  # kept strictly increasing after rounding
            steps.append(max(int(round(step / global_batch)), steps[-1] + 1 if steps else 1))
        changes["coarse_to_fine"] = tuple(steps)
        notes.append(f"coarse_to_fine {tuple(config.coarse_to_fine)} -> {changes['coarse_to_fine']}")
    strategy = config.strategy
    strategy_changes = {}
    for name in STRATEGY_STEP_FIELDS:
        if hasattr(strategy, name):
            old = getattr(strategy, name)
            strategy_changes[name] = max(1, int(round(old / global_batch)))
            notes.append(f"strategy.{name} {old} -> {strategy_changes[name]}")
    factor = math.sqrt(global_batch)
    lr = dataclasses.replace(config.lr, **{f.name: getattr(config.lr, f.name) * factor for f in dataclasses.fields(config.lr) if f.name != "means_final_ratio"})
    changes["lr"] = lr
    changes["strategy"] = dataclasses.replace(strategy, **strategy_changes)
    gabor = getattr(config, "gabor", None)  # --model gabor's term schedule counts steps too
    if gabor is not None and getattr(config, "model", None) == "gabor":
        gabor_changes = {name: max(1, int(round(getattr(gabor, name) / global_batch))) for name in STRATEGY_STEP_FIELDS
                         if hasattr(gabor, name)}
        notes += [f"gabor.{name} {getattr(gabor, name)} -> {value}" for name, value in gabor_changes.items()]
        changes["gabor"] = dataclasses.replace(gabor, **gabor_changes)
    return dataclasses.replace(config, **changes), notes


class StatisticsSync:
    """Sum over ranks what a strategy's `post_backward` adds to its statistics this step.

    Every rank starts the step with identical statistics; afterwards each holds old + its own increment. Summing the
    increments makes every rank hold old + all increments: what one process would gather from all the views.
    """

    def __init__(self, ctx: DistContext):
        self.ctx = ctx
        self._before: Dict[str, torch.Tensor] = {}

    def before(self, strategy) -> None:
        """Remember the strategy's statistics (`Strategy.statistics()`) before this step's `post_backward` calls."""
        self._before = {n: t.clone() for n, t in strategy.statistics().items()} if self.ctx.enabled else {}

    def after(self, strategy, step: int) -> None:
        """Replace each statistic by its value before the step plus the increments of all ranks."""
        if not self._before:
            return
        current = strategy.statistics()
        deltas = [current[n] - self._before[n] for n in self._before]
        self.ctx.sum_(deltas, f"densification statistics all-reduce at step {step}")
        for (name, old), delta in zip(self._before.items(), deltas):
            current[name].copy_(old + delta)
        self._before = {}
