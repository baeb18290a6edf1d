"""ViewerServer: a viser server that streams splatforge renders to every connected browser."""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Deque, Dict, Optional, Sequence

import numpy as np
import viser

from .camera_path_panel import CameraPathPanel
from .client_loop import ClientRenderLoop
from .edit_panel import EditPanel
from .frames import VISER_MAX_DEPTH, FrameRecord
from .gui import ClientGui, ViewSettings

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080


class PortInUseError(OSError, ValueError):
    """An explicitly requested port is taken (an OSError for callers that catch those, a ValueError for run_cli)."""


def port_is_free(host: str, port: int) -> bool:
    """Whether a listening TCP socket can bind host:port now (SO_REUSEADDR, as asyncio's servers use)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return True  # an unresolvable host fails in the server itself, with its own message
    for family, kind, proto, _name, address in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
        except OSError:
            return False
    return True


def check_port_free(host: str, port: int, option: str = "--port") -> None:
    """Raise PortInUseError (naming `option`) if an explicitly requested port is taken; 0 means any port."""
    if port and not port_is_free(host, port):
        raise _port_busy(host, port, option)


def _port_busy(host: str, port: int, option: str) -> PortInUseError:
    return PortInUseError(
        f"{option} {port}: port {port} on {host} is already in use (another viewer or program?); "
        f"stop that program, pick another port, or pass {option} 0 for any free port"
    )


class ViewerServer:
    """Serves `scene` at http://host:port; one `ClientRenderLoop` per browser tab.

    Frames carry camera-axis depth in scene units so viser's own meshes composite with the splats. viser
    packs depth as fixed point up to ~167.8 units (`VISER_MAX_DEPTH`); farther surfaces are clamped there and
    empty pixels are sent at that far depth, so scenes should be normalised to a size of tens of units.

    Live training: the trainer shares the scene object and holds `scene_lock` while it mutates parameters
    (renders also hold it), then calls `notify_scene_changed()`; `set_scene()` swaps in a new scene.
    """

    def __init__(
        self,
        scene,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        background: Sequence[float] = (0.0, 0.0, 0.0),
        max_resolution: int = 1024,
        backend: str = "auto",
        settle_s: float = 0.2,
        frame_budget_s: float = 0.1,
        history: int = 64,
        verbose: bool = True,
        label: str = "splatforge",
        port_option: str = "--port",
    ):
        """`port`: None binds DEFAULT_PORT, or the next free port when it is busy (printed); 0 binds any free
        port; any other port must be free, else PortInUseError (named after the CLI option `port_option`)."""
        self.scene_lock = threading.RLock()
        self._scene = scene
        self.backend = backend
        self.settle_s = settle_s
        self.frame_budget_s = frame_budget_s
        self.defaults = ViewSettings(
            background=tuple(float(c) for c in background), max_resolution=int(max_resolution)
        )
        self.frames_sent: Dict[int, Deque[FrameRecord]] = {}
        self.sessions: Dict[int, ClientRenderLoop] = {}
        self.guis: Dict[int, ClientGui] = {}
        self.camera_paths: Dict[int, CameraPathPanel] = {}  # per-client "Camera path" panels
        self.edit_panels: Dict[int, EditPanel] = {}  # per-client "Edit" panels (shared SplatEditor per scene)
        self.field_save_path = Path("edited_field.pt")  # where a field layer's "Save field" writes (sf-view sets it)
        self._history = history
        self._lock = threading.Lock()
        self._frame_event = threading.Condition(self._lock)
        self._warn_if_large(scene)

        explicit = port is not None and int(port) != 0
        requested = DEFAULT_PORT if port is None else int(port)
        if explicit and not port_is_free(host, requested):
            raise _port_busy(host, requested, port_option)
        self.viser = viser.ViserServer(host=host, port=requested, label=label, verbose=False)
        bound = self.viser.get_port()
        if explicit and bound != requested:  # taken between the check and viser's bind: viser moved on
            self.viser.stop()
            raise _port_busy(host, requested, port_option)
        if port is None and bound != requested:
            print(f"port {requested} is busy; the viewer uses port {bound} instead ({port_option} N to choose)", flush=True)
        self.viser.gui.configure_theme(show_share_button=False)
        self._frame_initial_camera(scene)
        self.viser.on_client_connect(self._on_connect)
        self.viser.on_client_disconnect(self._on_disconnect)
        if verbose:
            print(f"splatforge viewer at {self.url}", flush=True)

    # ----- addresses ----------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return self.viser.get_host()

    @property
    def port(self) -> int:
        """The port actually bound (differs from the requested one for port=0, or a busy default port)."""
        return self.viser.get_port()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ----- scene sharing (live training hook) -----------------------------------------------------------
    @property
    def scene(self):
        return self._scene

    def set_scene(self, scene) -> None:
        """Show a different scene object; every client re-renders."""
        with self.scene_lock:
            self._scene = scene
        self._warn_if_large(scene)
        self.notify_scene_changed()

    def notify_scene_changed(self) -> None:
        """The scene's parameters changed (e.g. an optimiser step): re-render every client."""
        for session in list(self.sessions.values()):
            session.notify()

    def _render_context(self):
        return self._scene, self.scene_lock

    def _frame_initial_camera(self, scene) -> None:
        """Point new clients' cameras at the bulk of the scene (median of the means, robust radius)."""
        means = getattr(scene, "means", None)
        field = scene if hasattr(scene, "render_rays") else getattr(scene, "field", None)
        if means is None and field is not None:  # a radiance field: look at its box from outside
            center, radius = field.world_center_radius()
            c = center.numpy().astype(np.float64)
            self.viser.initial_camera.look_at = tuple(c)
            self.viser.initial_camera.position = tuple(c + np.array([1.0, 1.0, 0.6]) / np.linalg.norm([1.0, 1.0, 0.6]) * radius * 2.0)
            return
        if means is None or len(scene) == 0:
            return
        pts = means.detach().float().cpu()
        center = pts.median(dim=0).values
        radius = float((pts - center).norm(dim=1).quantile(0.9)) if len(pts) > 1 else 1.0
        radius = max(radius, 1e-3)
        direction = np.array([1.0, 1.0, 0.6]) / np.linalg.norm([1.0, 1.0, 0.6])
        c = center.numpy().astype(np.float64)
        self.viser.initial_camera.look_at = tuple(c)
        self.viser.initial_camera.position = tuple(c + direction * radius * 3.0)

    @staticmethod
    def _warn_if_large(scene) -> None:
        means = getattr(scene, "means", None)
        if means is None:
            return
        try:
            extent = float(means.detach().abs().max())
        except Exception:
            return
        if extent > VISER_MAX_DEPTH / 2:
            log.warning(
                "scene extends to %.0f units; viser clamps composited depth at %.1f units, so meshes drawn by "
                "viser may occlude wrongly beyond that (normalise the scene to fix)", extent, VISER_MAX_DEPTH
            )

    # ----- clients ------------------------------------------------------------------------------------
    def _on_connect(self, client) -> None:
        scene = self._scene
        time_range = getattr(scene, "time_range", None)
        session_ref: Dict[str, ClientRenderLoop] = {}
        gui = ClientGui(
            client.gui,
            self.defaults if time_range is None else _with_time(self.defaults, time_range),
            on_change=lambda: session_ref["loop"].notify() if "loop" in session_ref else None,
            time_range=time_range,
            max_sh_degree=int(getattr(scene, "sh_degree", 3)),
        )
        loop = ClientRenderLoop(
            client,
            settings=gui.settings,
            render_context=self._render_context,
            on_frame=self._record_frame,
            backend=self.backend,
            settle_s=self.settle_s,
            frame_budget_s=self.frame_budget_s,
            gui=gui,
            on_closed=self._on_loop_closed,
        )
        session_ref["loop"] = loop
        with self._lock:
            self.sessions[client.client_id] = loop
            self.guis[client.client_id] = gui
            self.frames_sent.setdefault(client.client_id, collections.deque(maxlen=self._history))
        self.camera_paths[client.client_id] = CameraPathPanel(client, time_slider=gui.time_slider)
        if hasattr(scene, "render_rays") or hasattr(scene, "field"):  # a radiance field (alone or with splats)
            from .field_panel import FieldLayer, FieldPanel

            self.edit_panels[client.client_id] = FieldPanel(FieldLayer(self), client, self.field_save_path)
        else:
            self.edit_panels[client.client_id] = EditPanel(self, client)
        from .mesh_panel import attach_mesh_panel  # meshes + server-side shadows on the splats

        attach_mesh_panel(self, client, loop)
        client.camera.on_update(lambda _camera: loop.notify())
        loop.start()
        loop.notify()

    def _on_disconnect(self, client) -> None:
        with self._lock:
            loop = self.sessions.pop(client.client_id, None)
            self.guis.pop(client.client_id, None)
        panel = self.camera_paths.pop(client.client_id, None)
        if panel is not None:
            panel.close()
        edit_panel = self.edit_panels.pop(client.client_id, None)
        if edit_panel is not None:
            edit_panel.close()
        if loop is not None:
            loop.stop()

    def _on_loop_closed(self, client_id: int) -> None:
        with self._lock:  # client ids are never reused, so dropping by id is safe
            self.sessions.pop(client_id, None)
            self.guis.pop(client_id, None)

    def _record_frame(self, client_id: int, record: FrameRecord) -> None:
        with self._frame_event:
            self.frames_sent.setdefault(client_id, collections.deque(maxlen=self._history)).append(record)
            self._frame_event.notify_all()

    def wait_for_frame(
        self,
        predicate: Callable[[int, FrameRecord], bool] = lambda _cid, _rec: True,
        timeout: float = 30.0,
        after_seq: Optional[Dict[int, int]] = None,
    ) -> Optional[tuple]:
        """Block until some client was sent a frame matching `predicate`; returns (client_id, record) or None.

        `after_seq` ({client_id: seq}) only considers frames sent after those sequence numbers.
        """
        deadline = time.monotonic() + timeout
        with self._frame_event:
            while True:
                for cid, records in self.frames_sent.items():
                    floor = (after_seq or {}).get(cid, 0)
                    for rec in reversed(records):
                        if rec.seq > floor and predicate(cid, rec):
                            return cid, rec
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._frame_event.wait(min(remaining, 0.5))

    # ----- lifetime -----------------------------------------------------------------------------------
    def stop(self) -> None:
        with self._lock:
            loops = list(self.sessions.values())
            self.sessions.clear()
        for loop in loops:
            loop.stop(join_timeout=5.0)
        self.viser.stop()

    def serve_forever(self) -> None:
        """Block until interrupted (Ctrl-C), then stop the server."""
        try:
            threading.Event().wait()
        finally:
            self.stop()

    def __enter__(self) -> "ViewerServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _with_time(defaults: ViewSettings, time_range) -> ViewSettings:
    from dataclasses import replace

    return replace(defaults, time=float(time_range[0]))
