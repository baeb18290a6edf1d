"""The viewer's field layer (logic without a browser) and sf-view's field loading / alignment."""

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cuda_rasterizer import field_ops
from scenes import load_scene, save_checkpoint
from scenes.hybrid import HybridScene
from scenes.radiance_field import FieldConfig, RadianceField
from scripts.view import ViewConfig, with_field
from viewer.field_panel import FieldLayer, placement_matrix

from _mesh_scenes import scene_of, splat_plane

SMALL = FieldConfig(levels=4, log2_table=12, finest_res=32, hidden=16, grid_res=16, march_steps=64)


def server_with(scene):
    changed = []
    server = SimpleNamespace(scene=scene, scene_lock=threading.RLock(), notify_scene_changed=lambda: changed.append(1))
    return server, changed


def test_field_layer_edits_undo_redo_and_save(tmp_path):
    field = RadianceField(SMALL, field_ops.MODE_BOX, [-1, -1, -1, 1, 1, 1])
    scene = HybridScene(scene_of(splat_plane(2, 3.0)), field)
    server, changed = server_with(scene)
    layer = FieldLayer(server)
    layer.set_visible(field=False)
    assert not scene.show_field and scene.show_splats
    layer.crop((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5))
    layer.erase((0, 0, 0), (0.2, 0.2, 0.2))
    layer.place((1.0, 0.0, 0.0), (0.0, 0.0, 90.0), 2.0)
    assert field.edits.crop is not None and len(field.edits.erased) == 1
    assert layer.undo() and torch.allclose(field.edits.field_from_world, torch.eye(4, dtype=torch.float64))
    assert layer.redo() and not torch.allclose(field.edits.field_from_world, torch.eye(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="zero"):
        layer.crop((0, 0, 0), (0, 1, 1))
    singular = placement_matrix((0, 0, 0), (0, 0, 0), 1.0)
    singular[:3, 0] = 0
    with pytest.raises(ValueError, match="singular"):
        layer.align(singular)
    saved = layer.save(tmp_path / "edited.pt")
    back = load_scene(saved)
    assert back.edits.crop == field.edits.crop and back.edits.erased == field.edits.erased
    assert len(changed) >= 5


def test_sf_view_loads_a_field_with_splats_and_aligns_it(tmp_path):
    field = RadianceField(SMALL, field_ops.MODE_BOX, [-1, -1, -1, 1, 1, 1])
    save_checkpoint(tmp_path / "field.pt", {"scene": field.state()})
    splats = scene_of(splat_plane(2, 3.0))
    align = tmp_path / "align.json"
    align.write_text(json.dumps(placement_matrix((0.5, 0, 0), (0, 0, 0), 1.0).tolist()))
    cfg = ViewConfig(scene=tmp_path / "s.ply", field=tmp_path / "field.pt", align=align, field_mode="background")
    hybrid = with_field(splats, cfg)
    assert isinstance(hybrid, HybridScene) and hybrid.field_mode == "background"
    assert float(hybrid.field.edits.field_from_world[0, 3]) == pytest.approx(-0.5)
    align.write_text(json.dumps([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    with pytest.raises(ValueError, match="singular"):
        with_field(splats, cfg)
    with pytest.raises(ValueError, match="not a radiance field"):
        splats.save_ply(tmp_path / "s.ply")
        with_field(splats, ViewConfig(scene=tmp_path / "s.ply", field=tmp_path / "s.ply"))
