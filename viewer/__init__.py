"""Interactive browser viewer (viser) streaming splatforge renders with adaptive resolution."""

from .adaptive import AdaptiveResolution
from .camera_bridge import camera_from_client, camera_from_viser_pose, fit_resolution
from .client_loop import ClientRenderLoop
from .frames import VISER_MAX_DEPTH, FrameRecord, render_frame
from .gui import ClientGui, ViewSettings
from .server import ViewerServer

__all__ = [
    "AdaptiveResolution",
    "ClientGui",
    "ClientRenderLoop",
    "FrameRecord",
    "VISER_MAX_DEPTH",
    "ViewSettings",
    "ViewerServer",
    "camera_from_client",
    "camera_from_viser_pose",
    "fit_resolution",
    "render_frame",
]
