"""Several layers rendered together: a splat scene and a radiance field (composited by depth in render.hybrid)."""

from __future__ import annotations

from typing import Literal, Optional

FieldMode = Literal["volume", "background"]


class HybridScene:
    """Splats (any scene with `rasterizer_inputs`, or None) and a radiance field (or None).

    field_mode "volume": the field is a volume among the splats (its samples in front of the splats' depth come
    first, then the splats, then the samples behind); "background": the field is only seen through the splats
    (sky / far field). `show_splats` / `show_field` hide a layer without dropping it.
    """

    KIND = "hybrid"

    def __init__(self, splats=None, field=None, field_mode: FieldMode = "volume"):
        if field_mode not in ("volume", "background"):
            raise ValueError(f"field_mode must be 'volume' or 'background', got {field_mode!r}")
        if splats is None and field is None:
            raise ValueError("a hybrid scene needs splats, a field or both")
        self.splats = splats
        self.field = field
        self.field_mode = field_mode
        self.show_splats = True
        self.show_field = True

    @property
    def visible_splats(self) -> Optional[object]:
        return self.splats if self.show_splats else None

    @property
    def visible_field(self) -> Optional[object]:
        return self.field if self.show_field else None
