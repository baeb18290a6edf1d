"""`render(scene, camera)`: turn a scene and a camera into RGB, alpha and depth through the rasterizer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Union

import torch

from cuda_rasterizer import prepare_backend, rasterize_gaussians

from .camera import Camera


@dataclass
class RenderOutput:
    rgb: torch.Tensor  # (H, W, 3), background composited
    alpha: torch.Tensor  # (H, W, 1)
    depth: torch.Tensor  # (H, W, 1) expected camera-axis z in scene units, 0 where empty
    meta: Dict[str, torch.Tensor] = field(default_factory=dict)


def render(
    scene,
    camera: Camera,
    background: Optional[Union[Sequence[float], torch.Tensor]] = None,
    backend: str = "auto",
    sh_degree: Optional[int] = None,
    check_finite: bool = True,
    absgrad: bool = False,
) -> RenderOutput:
    """Render `scene` (anything with `rasterizer_inputs(camera, sh_degree)`, a radiance field, or a hybrid scene of
    splats and a field composited by depth, `render.hybrid`) from `camera`.

    background: RGB in [0, 1] (default black). backend: auto | cuda | cpu | reference. The scene sees
    `camera.time` through the camera (4D scenes render their slice at that time). Scenes that cull primitives
    (4D: temporally) provide `rasterizer_inputs_with_index`; meta['primitive_index'] then maps each rasterized
    row (means2d, radii, depths) to its primitive in the scene. check_finite=False: the caller guarantees finite
    scene parameters (see `rasterize_gaussians`). absgrad=True: meta['means2d'].absgrad after backward (gsplat's
    absgrad; off by default, as there: no strategy here reads it, and on the CPU it costs backward time).
    """
    if hasattr(scene, "render_rays"):  # a radiance field (scenes.radiance_field)
        from .field_render import render_field

        return render_field(scene, camera, background)
    if hasattr(scene, "field") and hasattr(scene, "splats"):  # splats + field (scenes.hybrid)
        from .hybrid import render_layers

        return render_layers(scene, camera, background=background, backend=backend, sh_degree=sh_degree)
    with_index = getattr(scene, "rasterizer_inputs_with_index", None)
    if with_index is not None:
        inputs, index = with_index(camera, sh_degree=sh_degree)
    else:
        inputs, index = scene.rasterizer_inputs(camera, sh_degree=sh_degree), None
    means = inputs["means"]
    bg = torch.zeros(3) if background is None else torch.as_tensor(background, dtype=torch.float32)
    out = rasterize_gaussians(
        viewmat=camera.world_to_camera,  # moved where the backend wants it (the host, for CUDA)
        K=camera.K,
        width=camera.width,
        height=camera.height,
        near=camera.near,
        far=camera.far,
        background=bg.to(means.device),
        backend=backend,
        check_finite=check_finite,
        absgrad=absgrad,
        **inputs,
    )
    meta = dict(out.meta)
    if index is not None:
        meta["primitive_index"] = index
    return RenderOutput(out.colors, out.alphas, out.depths, meta)


def prepare_renderer(backend: str = "auto", device: Union[str, torch.device] = "cpu") -> str:
    """Build/load the rasterizer backend `render()` will use on `device` (compiles once on first use).

    Timed loops call this first so a one-off compile is not counted as work. Returns the resolved backend name.
    """
    return prepare_backend(backend, torch.device(device))
