"""Edit panel end to end in headless chromium: GUI clicks reach the server, a mouse-drag rect select, delete, undo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scenes import GaussianScene
from browser_support import poll


def ball_scene(n: int = 300, radius: float = 0.5, seed: int = 0) -> GaussianScene:
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3))
    pts = pts / np.linalg.norm(pts, axis=1, keepdims=True) * radius * rng.random((n, 1)) ** (1 / 3)
    colors = np.clip(rng.random((n, 3)) * 0.6 + 0.4 * np.array([1.0, 0.3, 0.1]), 0, 1)
    return GaussianScene.from_points(pts, colors, sh_degree=1, initial_opacity=0.9, scale_multiplier=1.5)


def press(page, name: str) -> None:
    """Click a GUI button in the page; if something overlays it (a toast under load), dispatch the DOM click."""
    button = page.get_by_role("button", name=name, exact=True)
    try:
        button.click(timeout=10_000)
    except Exception:
        button.dispatch_event("click")


@pytest.mark.browser
def test_browser_rect_select_delete_undo(browser, tmp_path):
    from viewer import ViewerServer

    scene = ball_scene(300)
    n = len(scene)
    server = ViewerServer(scene, port=0, max_resolution=128, verbose=False)
    try:
        page = browser.new_page(viewport={"width": 640, "height": 480})
        page.goto(f"{server.url}/?fixedDpr=1")
        got = server.wait_for_frame(lambda cid, rec: rec.full_res and rec.std > 0.03, timeout=60)
        assert got is not None, f"no frame; sessions {list(server.sessions)}, edit panels {list(server.edit_panels)}"
        cid = got[0]
        panel = poll(lambda: server.edit_panels.get(cid), 10)
        assert panel is not None, "no edit panel registered for the client"

        # GUI clicks in the page reach the server: open the folder, turn on rect-select mode
        page.get_by_text("Edit", exact=True).first.click()
        page.get_by_text("Rect select (drag)", exact=True).click()
        assert poll(lambda: panel.rect_mode.value and panel._rect_cbs, 15), "checkbox click did not reach the server"

        # drag a rectangle over the left part of the canvas (the GUI panel sits on the right), below viser's
        # software-WebGL notice in the top-left corner. The server->client "rect-select enabled" message is
        # asynchronous: a drag that lands before it arrives orbits the camera instead, so retry a few times.
        editor = panel.editor
        selected = None
        for _attempt in range(4):
            page.mouse.move(60, 150)
            page.mouse.down()
            page.mouse.move(100, 200, steps=6)
            page.mouse.move(250, 400, steps=6)
            page.mouse.up()
            selected = poll(lambda: editor.num_selected, 5)
            if selected:
                break
        assert selected and 0 < selected < n, f"rect select selected {editor.num_selected} of {n}: {panel.last_message}"

        seq = server.frames_sent[cid][-1].seq
        press(page, "Delete")
        assert poll(lambda: len(server.scene) == n - selected, 15), f"delete: {len(server.scene)} splats"
        got = server.wait_for_frame(lambda c, rec: c == cid, timeout=30, after_seq={cid: seq})
        assert got is not None, "no re-render after delete"
        assert poll(lambda: f"**{n - selected:,}** splats" in panel.status.content, 10), panel.status.content

        press(page, "Undo")

        def restored() -> bool:  # read under the scene lock: undo re-inserts rows first, then restores the selection
            with server.scene_lock:
                return len(server.scene) == n and editor.num_selected == selected

        assert poll(restored, 15), f"undo: {len(server.scene)} splats, {editor.num_selected} selected (want {n}, {selected})"
        press(page, "Redo")
        assert poll(lambda: len(server.scene) == n - selected, 15), "redo did not delete again"

        # the same handlers driven by synthetic events / programmatic control changes (no mouse needed)
        idx = panel.select_click((0.5, 0.5))  # click pick at the image centre
        assert idx >= 0 and editor.num_selected == 1 and bool(editor.selection[idx])
        panel.crop_size.value = (0.4, 0.4, 0.4)
        panel.crop_show.value = True  # box + gizmo at the centre of the visible splats
        assert panel.crop_gizmo is not None
        inside = panel.select_by_box(True)
        centre = np.asarray(panel.crop_gizmo.position)
        expected = int((np.abs(server.scene.means.detach().numpy() - centre) <= 0.2).all(axis=1).sum())
        assert inside == expected > 0
        before = server.scene.means.detach().clone()
        sel = editor.selection.clone()
        panel.move_show.value = True
        panel._on_move("start")
        panel.move_gizmo.position = tuple(np.asarray(panel.move_gizmo.position) + [0.0, 0.0, 0.25])
        panel._on_move("end")  # as on gizmo release: the selection moves by the gizmo's delta
        moved = server.scene.means.detach() - before
        assert torch.allclose(moved[sel], torch.tensor([0.0, 0.0, 0.25]), atol=1e-5)
        assert torch.equal(moved[~sel], torch.zeros_like(moved[~sel]))
        panel.undo_btn.value = True  # a programmatic button press runs the same callback
        assert torch.equal(server.scene.means.detach(), before)

        # saving from the panel writes a PLY with the current count
        out = tmp_path / "edited.ply"
        panel.save_path.value = str(out)
        press(page, "Save PLY")
        assert poll(lambda: out.exists(), 15), "save PLY click did not write the file"
        assert len(GaussianScene.from_ply(out)) == n - selected
        page.close()
    finally:
        server.stop()


def test_modifier_keys_map_to_combine_modes():
    from viewer.edit_panel import mode_for

    assert mode_for(None, "replace") == "replace"
    assert mode_for(None, "add") == "add"
    assert mode_for("shift", "replace") == "add"
    assert mode_for("cmd/ctrl", "replace") == "subtract"
    assert mode_for("alt", "subtract") == "subtract"


def test_histogram_figure_is_binned():
    pytest.importorskip("plotly")
    from viewer.edit_panel import editor_for, histogram_figure

    fig = histogram_figure(np.linspace(0.0, 1.0, 1000), "opacity", bins=20)
    assert len(fig.data[0].x) == 20 and int(np.sum(fig.data[0].y)) == 1000
    scene = ball_scene(20)
    assert editor_for(scene) is editor_for(scene) and editor_for(object()) is None
