"""Size and accuracy of the scene file formats (PLY, .splat, .spz v2/v3) on one scene; prints a Markdown table.

    python -m scripts.bench_formats [--scene scene.ply] [--num-gaussians 100000]

Without --scene, a random SH-degree-3 scene in trained-scene value ranges is used (positions within +-2 units).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch
import tyro

from render import Camera, render
from scenes import GaussianScene, load_scene, save_scene
from scenes.splat_format import decode_splat, encode_splat
from scenes.spz import decode_spz, encode_spz


@dataclass
class BenchFormatsConfig:
    scene: Optional[Path] = None
    num_gaussians: int = 100_000
    seed: int = 0


def random_scene(n: int, seed: int) -> GaussianScene:
    gen = torch.Generator().manual_seed(seed)
    return GaussianScene(
        {
            "means": (torch.rand(n, 3, generator=gen) * 4 - 2) + torch.tensor([0.0, 0.0, 4.0]),
            "quats": torch.randn(n, 4, generator=gen),
            "log_scales": torch.rand(n, 3, generator=gen) * 3 - 6,
            "opacity_logits": torch.randn(n, generator=gen) * 2,
            "sh_dc": torch.rand(n, 1, 3, generator=gen) * 3 - 1.5,
            "sh_rest": torch.randn(n, 15, 3, generator=gen) * 0.1,
        },
        sh_degree=3,
    )


def errors(original: GaussianScene, loaded: GaussianScene, index: torch.Tensor) -> Dict[str, float]:
    p = {k: v.detach()[index].double() for k, v in original.params.items()}
    q = {k: v.detach().double() for k, v in loaded.params.items()}
    dot = (torch.nn.functional.normalize(p["quats"], dim=-1) * torch.nn.functional.normalize(q["quats"], dim=-1)).sum(-1).abs()
    rest = min(p["sh_rest"].shape[1], q["sh_rest"].shape[1])
    return {
        "pos": float((p["means"] - q["means"]).abs().max()),
        "log_scale": float((p["log_scales"] - q["log_scales"]).abs().max()),
        "rot_deg": float(torch.rad2deg(2 * torch.acos(dot.clamp(max=1))).max()),
        "alpha": float((torch.sigmoid(p["opacity_logits"]) - torch.sigmoid(q["opacity_logits"])).abs().max()),
        "dc": float((p["sh_dc"] - q["sh_dc"]).abs().max()),
        "sh_rest": float((p["sh_rest"][:, :rest] - q["sh_rest"][:, :rest]).abs().max()) if rest else float("nan"),
    }


def psnr_against(original: GaussianScene, loaded: GaussianScene) -> float:
    centre = original.means.detach().median(dim=0).values
    w2c = torch.eye(4)
    w2c[:3, 3] = -centre + torch.tensor([0.0, 0.0, 4.0])
    camera = Camera(w2c, fx=200.0, fy=200.0, cx=128.0, cy=96.0, width=256, height=192)
    with torch.no_grad():
        a = render(original, camera, background=(0, 0, 0), sh_degree=3).rgb
        b = render(loaded, camera, background=(0, 0, 0), sh_degree=3).rgb
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(1 / max(mse, 1e-12))


def main(config: BenchFormatsConfig) -> None:
    scene = load_scene(config.scene) if config.scene else random_scene(config.num_gaussians, config.seed)
    n = len(scene)
    params = {k: v.detach() for k, v in scene.params.items()}
    print(f"scene: {config.scene or 'random'}, {n} Gaussians, SH degree {scene.sh_degree}\n")
    print("| format | bytes/splat | ratio to PLY | encode s | decode s | max pos err | max log-scale err | max rot err (deg) | max alpha err | max DC err | max SH-rest err | render PSNR vs original (dB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        ply = Path(tmp) / "s.ply"
        t0 = time.perf_counter()
        save_scene(scene, ply)
        t1 = time.perf_counter()
        ply_loaded = load_scene(ply)
        t2 = time.perf_counter()
        ply_bytes = ply.stat().st_size
        rows = [("PLY (float32)", ply_bytes, t1 - t0, t2 - t1, ply_loaded, torch.arange(n))]
    t0 = time.perf_counter()
    blob = encode_splat(params)
    t1 = time.perf_counter()
    splat_loaded = GaussianScene(decode_splat(blob), sh_degree=0)
    t2 = time.perf_counter()
    index = torch.cdist(splat_loaded.means.detach(), scene.means.detach()).argmin(dim=1) if n <= 20000 else None
    if index is None:  # match by exact position (.splat stores float32 positions unchanged)
        order = {tuple(v): i for i, v in enumerate(params["means"].tolist())}
        index = torch.tensor([order[tuple(v)] for v in splat_loaded.means.detach().tolist()])
    rows.append((".splat", len(blob), t1 - t0, t2 - t1, splat_loaded, index))
    for version in (2, 3):
        t0 = time.perf_counter()
        blob = encode_spz(params, scene.sh_degree, version=version)
        t1 = time.perf_counter()
        loaded = decode_spz(blob)
        t2 = time.perf_counter()
        rows.append((f".spz v{version}", len(blob), t1 - t0, t2 - t1, GaussianScene(loaded["params"], sh_degree=loaded["sh_degree"]), torch.arange(n)))
    for name, size, enc, dec, loaded, index in rows:
        e = errors(scene, loaded, index)
        shown = GaussianScene({k: v.detach()[index] for k, v in scene.params.items()}, sh_degree=scene.sh_degree)
        print(f"| {name} | {size / n:.1f} | {size / ply_bytes:.3f} | {enc:.2f} | {dec:.2f} | {e['pos']:.2e} | {e['log_scale']:.3f} | "
              f"{e['rot_deg']:.2f} | {e['alpha']:.4f} | {e['dc']:.4f} | {e['sh_rest']:.4f} | {psnr_against(shown, loaded):.1f} |")
    print("\n(.splat keeps SH degree 0 only: its render PSNR includes the lost view dependence.)")


if __name__ == "__main__":
    main(tyro.cli(BenchFormatsConfig))
