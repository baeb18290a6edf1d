"""Meshes in the browser viewer: two-way occlusion by screenshot, upload through the page, server-side shadows."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
import torch

from render.conventions import look_at_w2c
from render.shadows import camera_ray_directions
from scenes.meshes import MeshAsset
from viewer.camera_bridge import camera_from_client

from _mesh_scenes import scene_of, splat_plane
from browser_support import poll

MAGENTA = (1.0, 0.0, 1.0)


def open_page(browser, server, size=(640, 400)):
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.goto(f"{server.url}/?fixedDpr=1")
    got = server.wait_for_frame(lambda cid, rec: rec.full_res, timeout=40)
    assert got is not None, "no full frame sent"
    return page, got[0]


def screenshot(page) -> np.ndarray:
    import cv2

    png = page.screenshot()
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].astype(int)  # RGB


def project_to_page(server, cid, point, page_size) -> tuple:
    """Where a world point lands in the page (the canvas fills the viewport)."""
    handle = server.viser.get_clients()[cid].camera
    cam = camera_from_client(handle, max_resolution=max(page_size))
    p = cam.world_to_camera.double() @ torch.tensor([*point, 1.0], dtype=torch.float64)
    uv = (cam.K.double() @ p[:3])[:2] / p[2]
    return int(uv[0] * page_size[0] / cam.width), int(uv[1] * page_size[1] / cam.height)


def magenta_fraction(img, x, y, r=4) -> float:
    patch = img[y - r : y + r + 1, x - r : x + r + 1]
    red, green, blue = patch[..., 0], patch[..., 1], patch[..., 2]
    return float(((red > 90) & (blue > 90) & (green < 0.5 * np.minimum(red, blue))).mean())


@pytest.mark.browser
def test_browser_mesh_in_front_shows_and_behind_a_splat_wall_is_hidden(browser):
    from viewer import ViewerServer
    from viewer.mesh_panel import mesh_layer

    wall = scene_of(splat_plane(1, 0.0, size=(4.0, 3.0), color=(0.2, 0.8, 0.3)))
    server = ViewerServer(wall, port=0, max_resolution=200, verbose=False)
    try:
        server.viser.initial_camera.position = (0.6, -5.0, 0.0)  # the scene lands left of the GUI panel
        server.viser.initial_camera.look_at = (0.6, 0.0, 0.0)
        layer = mesh_layer(server)
        layer.add(MeshAsset.box("front", (0.5, 0.5, 0.5), center=(-1.2, -1.0, 0.0), color=MAGENTA))
        layer.add(MeshAsset.box("back", (0.5, 0.5, 0.5), center=(-0.3, 1.0, 0.0), color=MAGENTA))
        size = (640, 400)
        page, cid = open_page(browser, server, size)
        # The browser reports its camera asynchronously: project only once it is at the pose set above.
        handle = server.viser.get_clients()[cid].camera
        assert poll(lambda: np.allclose(handle.position, (0.6, -5.0, 0.0), atol=1e-3), 30), f"camera at {handle.position}"
        front = project_to_page(server, cid, (-1.2, -1.0, 0.0), size)
        back = project_to_page(server, cid, (-0.3, 0.0, 0.0), size)
        assert 40 < front[0] < back[0] < size[0] * 0.45, (front, back)  # left of the GUI panel
        assert back[0] - front[0] > 40

        def front_visible_back_hidden():
            img = screenshot(page)
            return magenta_fraction(img, *front) > 0.8 and magenta_fraction(img, *back) == 0.0 and img[back[1], back[0], 1] > 120

        assert poll(front_visible_back_hidden, 30, interval=0.3), (
            f"front {magenta_fraction(screenshot(page), *front):.2f} back {magenta_fraction(screenshot(page), *back):.2f}"
        )
        # moved in front of the wall, the back box shows
        layer.move("back", (1.0, 0.0, 0.0, 0.0), (-0.3, -2.0, 0.0))
        moved = project_to_page(server, cid, (-0.3, -2.0, 0.0), size)
        assert poll(lambda: magenta_fraction(screenshot(page), *moved) > 0.8, 30, interval=0.3), "moved mesh not shown"
        if os.environ.get("SF_SAVE_SCREENSHOTS"):
            page.screenshot(path=os.environ["SF_SAVE_SCREENSHOTS"])
        page.close()
    finally:
        server.stop()


@pytest.mark.browser
def test_browser_upload_reaches_the_server_and_bad_files_are_refused(browser, tmp_path):
    from viewer import ViewerServer
    from viewer.mesh_panel import mesh_layer

    server = ViewerServer(scene_of(splat_plane(2, 0.0, size=(2.0, 2.0))), port=0, max_resolution=96, verbose=False)
    try:
        page, cid = open_page(browser, server, (480, 360))
        layer = mesh_layer(server)
        box = MeshAsset.box("crate", (0.3, 0.3, 0.3), color=(0.9, 0.6, 0.1))
        glb = tmp_path / "crate.glb"
        buf = io.BytesIO()
        box.to_trimesh().export(buf, file_type="glb")
        glb.write_bytes(buf.getvalue())
        bad = tmp_path / "notes.txt"
        bad.write_text("not a mesh")
        upload = page.locator('input[type="file"][accept*=".glb"]')
        assert poll(lambda: upload.count() == 1, 20), "no mesh upload input on the page"
        upload.set_input_files(str(bad))
        assert poll(lambda: page.get_by_text("Mesh upload failed").count() > 0, 20), "no error notification"
        assert not layer.meshes
        upload.set_input_files(str(glb))
        assert poll(lambda: "crate" in layer.meshes, 20), f"upload did not arrive: {list(layer.meshes)}"
        assert len(layer.meshes["crate"].faces) == 12
        assert poll(lambda: page.get_by_text("Delete crate").count() > 0, 20), "mesh list not updated"
        folder = page.get_by_text("Meshes", exact=True)
        folder.click()  # expand the folder (collapsed by default)
        delete = page.get_by_text("Delete crate")
        last_toggle = [time.monotonic()]

        def click_delete():  # the folder animates open: retry a click that landed mid-animation or timed out
            from playwright.sync_api import TimeoutError as PlaywrightTimeout

            if layer.meshes and delete.count() and delete.is_visible():
                try:
                    delete.click(timeout=2000)
                except PlaywrightTimeout:  # a busy machine: the poll below retries until its own deadline
                    return False
            elif layer.meshes and time.monotonic() - last_toggle[0] > 8.0:
                # still hidden 8 s after the folder's click (on a loaded machine the click can miss the folder or
                # toggle it twice): click it again. (With 3 s here and a 20 s deadline, a slow clean-clone run of
                # the suite failed this assertion once while the test alone passed: re-clicking before a slow
                # opening shows would close the folder again.)
                last_toggle[0] = time.monotonic()
                try:
                    folder.click(timeout=2000)
                except PlaywrightTimeout:  # the poll comes back to the folder 8 s later
                    return False
            return not layer.meshes

        assert poll(click_delete, 60, interval=0.5), "delete did not remove the mesh"
        page.close()
    finally:
        server.stop()


@pytest.mark.browser
def test_browser_frame_carries_the_mesh_shadow(browser):
    from render.composite import Light
    from viewer import ViewerServer
    from viewer.mesh_panel import mesh_layer

    ground = scene_of(splat_plane(2, 0.0, size=(4.0, 4.0), spacing=0.08, color=(0.7, 0.7, 0.7)))
    server = ViewerServer(ground, port=0, max_resolution=200, verbose=False)
    try:
        server.viser.initial_camera.position = (0.0, -3.0, 3.5)
        server.viser.initial_camera.look_at = (0.0, 0.0, 0.0)
        layer = mesh_layer(server)
        layer.set_light(Light(direction=(0.0, 0.0, 1.0), shadow_strength=0.6))
        layer.add(MeshAsset.box("box", (1.0, 0.8, 0.3), center=(0.3, -0.2, 0.6), color=MAGENTA))
        captured = []
        original = layer.shadow_frame

        def spy(camera, rgb, alpha, depth, background):
            out = original(camera, rgb, alpha, depth, background)
            captured.append((camera, rgb.copy(), alpha.copy(), out))
            return out

        layer.shadow_frame = spy
        sent = {}
        page = browser.new_page(viewport={"width": 480, "height": 360})
        page.goto(f"{server.url}/?fixedDpr=1")
        assert poll(lambda: server.sessions, 30)
        cid = next(iter(server.sessions))
        loop = server.sessions[cid]
        loop.post_process = spy
        scene_api = loop.client.scene
        real_send = scene_api.set_background_image

        def record_send(image, *args, **kwargs):
            sent["image"] = image.copy()
            return real_send(image, *args, **kwargs)

        scene_api.set_background_image = record_send
        records = server.frames_sent.get(cid) or []
        seq0 = records[-1].seq if records else 0
        loop.notify()
        got = server.wait_for_frame(lambda c, rec: c == cid and rec.full_res, timeout=40, after_seq={cid: seq0})
        assert got is not None and captured and "image" in sent
        camera, before, alpha, after = captured[-1]
        assert (camera.width, camera.height) == sent["image"].shape[1::-1]
        np.testing.assert_allclose(sent["image"].astype(float) / 255, np.clip(after, 0, 1), atol=1 / 255 + 1e-6)
        # geometric expectation: the box's vertical projection onto z = 0
        dirs = camera_ray_directions(camera)
        c = camera.center.double().numpy()
        g = c + dirs * (-c[2] / dirs[..., 2])[..., None]
        footprint = (np.abs(g[..., 0] - 0.3) < 0.5) & (np.abs(g[..., 1] + 0.2) < 0.4) & (alpha[..., 0] > 0.95)
        darkened = after.mean(-1) < 0.8 * before.mean(-1)
        import cv2

        kernel = np.ones((5, 5), np.uint8)
        core = cv2.erode(footprint.astype(np.uint8), kernel) > 0
        grown = cv2.dilate(footprint.astype(np.uint8), kernel) > 0
        assert footprint.sum() > 150, footprint.sum()
        assert darkened[core].all() and not (darkened & ~grown).any()
        page.close()
    finally:
        server.stop()


def test_mesh_layer_without_a_browser_estimates_light_and_shadows_frames():
    from render import Camera
    from render.composite import direction_to_angles
    from viewer import ViewerServer
    from viewer.mesh_panel import mesh_layer

    from _mesh_scenes import angle_deg, probe_scene

    light_dir = (-0.4, 0.6, 0.7)
    server = ViewerServer(probe_scene(light_dir), port=0, max_resolution=64, verbose=False, backend="cpu")
    try:
        layer = mesh_layer(server)
        assert mesh_layer(server) is layer and layer.shadow_map() is None
        name = layer.add(MeshAsset.box("probe", (0.2, 0.2, 0.2)))
        light = layer.estimate_light()  # from the mesh's centre: the origin
        assert angle_deg(light.direction, light_dir) < 15.0
        assert layer.light == light and layer._sun.position == pytest.approx(tuple(np.asarray(light.unit_direction) * 100))
        assert layer.shadow_map() is layer.shadow_map()  # cached until something changes
        first = layer.shadow_map()
        layer.move(name, (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 1.0))
        assert layer.shadow_map() is not first
        # a frame post-process darkens only pixels whose surface is in the shadow map's shadow
        cam = Camera.from_fov(look_at_w2c((0, 0, 3.0), (0, 0, 0), up=(0, 1, 0)), 0.8, 32, 32)
        rgb = np.full((32, 32, 3), 0.5, np.float32)
        alpha = np.ones((32, 32, 1), np.float32)
        above = layer.shadow_frame(cam, rgb, alpha, np.full((32, 32, 1), 1.5, np.float32), (0, 0, 0))
        np.testing.assert_allclose(above, rgb)  # a surface at z = 1.5, above the mesh: lit
        below = layer.shadow_frame(cam, rgb, alpha, np.full((32, 32, 1), 2.9, np.float32), (0, 0, 0))
        dark = below.mean(-1) < 0.45  # a surface at z = 0.1, under the mesh: partly in its shadow
        assert 4 < dark.sum() < 0.5 * dark.size
        layer.remove(name)
        assert not layer.meshes and layer.shadow_map() is None
        assert direction_to_angles(light.direction)[1] > 0
    finally:
        server.stop()
