"""The training device: resolve `TrainConfig.device`, describe it for metrics, and move tensor trees between devices."""

from __future__ import annotations

from typing import Any, Optional

import torch


def resolve_device(name: str) -> torch.device:
    """"auto" -> the current CUDA GPU when torch.cuda.is_available(), else cpu; "cpu", "cuda" or "cuda:N" as asked.

    Raises ValueError (naming the `device` option) for anything else, and for a CUDA device this machine lacks.
    """
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"device {name!r} (--device) is not a device name; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise ValueError(f"device {name!r} (--device): training runs on cpu or cuda only")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r} (--device) asks for a CUDA GPU, but torch.cuda.is_available() is False here "
            "(no GPU, no driver, or a CPU-only PyTorch build); use --device cpu or --device auto"
        )
    index = torch.cuda.current_device() if device.index is None else device.index
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise ValueError(f"device {name!r} (--device): this machine has {count} CUDA device(s), cuda:0..{count - 1}")
    return torch.device("cuda", index)


def describe_device(device: torch.device) -> str:
    """"cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)" for a GPU."""
    if device.type != "cuda":
        return str(device)
    index = torch.cuda.current_device() if device.index is None else device.index
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def peak_gpu_memory_mb(device: torch.device) -> Optional[float]:
    """Peak MiB PyTorch allocated on a CUDA `device` in this process (torch.cuda.max_memory_allocated); None on cpu."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def tensors_to(tree: Any, device: torch.device) -> Any:
    """`tree` (nested dicts, lists, tuples) with every tensor on `device`; tensors already there are not copied."""
    if torch.is_tensor(tree):
        return tree.to(device)
    if isinstance(tree, dict):
        return {key: tensors_to(value, device) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        items = [tensors_to(value, device) for value in tree]
        return type(tree)(*items) if hasattr(tree, "_fields") else type(tree)(items)
    return tree


def optimizer_state_to_params(optimizer: torch.optim.Optimizer) -> None:
    """Move each parameter's optimiser moments (tensors with dim > 0, e.g. Adam's exp_avg) onto that parameter's
    device; scalar entries such as Adam's `step` stay where the optimiser keeps them, except for fused optimisers,
    which read them on the parameter's device too."""
    fused = any(group.get("fused") for group in optimizer.param_groups)
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and (value.dim() > 0 or fused) and value.device != param.device:
                state[key] = value.to(param.device)
