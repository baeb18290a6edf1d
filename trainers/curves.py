"""Training curves (loss, PSNR, primitive count against step and wall time) saved as one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

from scenes.atomic import atomic_path


def _smooth(values: Sequence[float], window: int) -> List[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_training_curves(history: List[Dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        raise ValueError("plot_training_curves: empty history")
    steps = [h["step"] for h in history]
    seconds = [h["seconds"] for h in history]
    window = max(1, len(history) // 50)
    series = [
        ("loss", _smooth([h["loss"] for h in history], window)),
        ("train PSNR (dB)", _smooth([h["psnr"] for h in history], window)),
        ("Gaussians", [h.get("num_gaussians", float("nan")) for h in history]),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for col, (label, values) in enumerate(series):
        for row, (x, xlabel) in enumerate([(steps, "step"), (seconds, "wall time (s)")]):
            ax = axes[row, col]
            ax.plot(x, values, lw=1.2)
            tests = [(h[xlabel == "step" and "step" or "seconds"], h["test_psnr"]) for h in history if "test_psnr" in h]
            if label.startswith("train PSNR") and tests:
                ax.plot([t[0] for t in tests], [t[1] for t in tests], "o-", label="test PSNR")
                ax.legend()
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
