"""The Field panel end to end in headless chromium: clicks in the page edit the server's field, and the streamed
frames show it (erase a box, undo, hide the field)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cuda_rasterizer import field_ops
from scenes.hybrid import HybridScene
from scenes.radiance_field import FieldConfig, RadianceField
from browser_support import poll

SMALL = FieldConfig(levels=4, log2_table=12, finest_res=32, hidden=16, grid_res=16, march_steps=64)


def red_fog_box() -> RadianceField:
    """A field filled with dense red fog in its box [-1, 1]^3 (uniform density e^3, colour sigmoid(4, -4, -4))."""
    field = RadianceField(SMALL, field_ops.MODE_BOX, [-1, -1, -1, 1, 1, 1])
    with torch.no_grad():
        for layer in (field.density_mlp[2], field.color_mlp[4]):
            layer.weight.zero_()
        field.density_mlp[2].bias.zero_()
        field.density_mlp[2].bias[0] = 3.0
        field.color_mlp[4].bias.copy_(torch.tensor([4.0, -4.0, -4.0]))
    return field


def red_fraction(page) -> float:
    import cv2

    img = cv2.imdecode(np.frombuffer(page.screenshot(), np.uint8), cv2.IMREAD_COLOR)[..., ::-1].astype(int)
    return float(((img[..., 0] > 150) & (img[..., 1] < 90) & (img[..., 2] < 90)).mean())  # the GUI has no red


def press(page, name: str) -> None:
    button = page.get_by_role("button", name=name, exact=True)
    try:
        button.click(timeout=10_000)
    except Exception:  # something overlays it (a toast under load): dispatch the DOM click
        button.dispatch_event("click")


@pytest.mark.browser
def test_browser_field_panel_erase_undo_and_hide(browser):
    from viewer import ViewerServer

    field = red_fog_box()
    scene = HybridScene(None, field)
    server = ViewerServer(scene, port=0, max_resolution=96, verbose=False, backend="cpu")
    try:
        page = browser.new_page(viewport={"width": 640, "height": 480})
        page.goto(f"{server.url}/?fixedDpr=1")
        assert server.wait_for_frame(lambda cid, rec: rec.full_res, timeout=60) is not None, "no full frame sent"
        assert poll(lambda: red_fraction(page) > 0.05, 30), "the red field is not on the page"
        if not page.get_by_role("button", name="Erase box", exact=True).is_visible():  # folder collapsed: open it
            page.get_by_text("Field", exact=True).first.click()
        press(page, "Erase box")  # the panel's default box is [-1, 1]^3: the whole field
        assert poll(lambda: len(field.edits.erased) == 1, 15), "the Erase box click did not reach the server"
        assert poll(lambda: red_fraction(page) < 0.002, 30), "the erased field is still drawn"
        press(page, "Undo")
        assert poll(lambda: not field.edits.erased, 15), "the Undo click did not reach the server"
        assert poll(lambda: red_fraction(page) > 0.05, 30), "undo did not bring the field back"
        page.get_by_text("Show field", exact=True).click()
        assert poll(lambda: not scene.show_field, 15), "the Show field checkbox did not reach the server"
        assert poll(lambda: red_fraction(page) < 0.002, 30), "the hidden field is still drawn"
    finally:
        server.stop()
