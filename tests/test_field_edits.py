"""Field edits: crop, erase, placement, undo / redo, saving, and their bad input."""

import pytest
import torch

from cuda_rasterizer import field_ops
from scenes import load_scene, save_checkpoint
from scenes.field_edits import FieldEdits
from scenes.radiance_field import FieldConfig, RadianceField

SMALL = FieldConfig(levels=4, log2_table=12, finest_res=32, hidden=16, grid_res=16, march_steps=64)


def field():
    f = RadianceField(SMALL, field_ops.MODE_BOX, [-1, -1, -1, 1, 1, 1])
    with torch.no_grad():
        f.density_mlp[-1].bias[0] = 3.0  # dense everywhere
    return f


def test_crop_erase_zero_the_density_and_undo_redo():
    f = field()
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.8, 0.8, 0.8]])
    assert (f.density(pts) > 1).all()
    f.edits.set_crop((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5))
    d = f.density(pts)
    assert d[0] > 1 and d[1] == 0
    f.edits.erase((-0.1, -0.1, -0.1), (0.1, 0.1, 0.1))
    assert (f.density(pts) == 0).all()
    assert f.edits.undo() and f.density(pts)[0] > 1
    assert f.edits.undo() and (f.density(pts) > 1).all()
    assert not f.edits.undo()
    assert f.edits.redo() and f.density(pts)[1] == 0


def test_transform_moves_the_field_and_edits_save(tmp_path):
    f = field()
    o, d = torch.tensor([[0.0, 0.0, -5.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    near, far = torch.zeros(1), torch.full((1,), 20.0)
    hit = f.render_rays(o, d, near, far)["opacity"]
    moved = torch.eye(4, dtype=torch.float64)
    moved[0, 3] = 10.0  # field placed 10 units along x: the ray misses it
    f.edits.set_transform(moved)
    assert float(f.render_rays(o, d, near, far)["opacity"].detach()) == 0 and float(hit.detach()) > 0.9
    f.edits.erase((0, 0, 0), (0.5, 0.5, 0.5))
    save_checkpoint(tmp_path / "f.pt", {"scene": f.state()})
    back = load_scene(tmp_path / "f.pt")
    assert torch.allclose(back.edits.field_from_world, f.edits.field_from_world) and back.edits.erased == f.edits.erased


def test_bad_edits_are_refused_and_leave_nothing_changed():
    edits = FieldEdits()
    with pytest.raises(ValueError, match="zero"):
        edits.set_crop((0, 0, 0), (1, 0, 1))
    with pytest.raises(ValueError, match="zero"):
        edits.erase((0, 0, 0), (0, 0, 0))
    singular = torch.eye(4)
    singular[2, 2] = 0
    with pytest.raises(ValueError, match="singular"):
        edits.set_transform(singular)
    assert edits.crop is None and not edits.erased and not edits.undo()
    assert torch.equal(edits.field_from_world, torch.eye(4, dtype=torch.float64))


@pytest.mark.parametrize("mode,params", [(field_ops.MODE_BOX, [-1, -1, -1, 1, 1, 1]), (field_ops.MODE_CONTRACT, [0.5, 0, 0, 2, 0, 0])])
def test_occupancy_cells_map_back_to_their_unit_cube_points(mode, params):
    f = RadianceField(SMALL, mode, params)
    g = SMALL.grid_res
    cells = torch.arange(0, g**3, 37)
    jitter = torch.rand(len(cells), 3) * 0.98 + 0.01
    ijk = torch.stack([cells % g, (cells // g) % g, cells // (g * g)], dim=1).float()
    expect = (ijk + jitter) / g
    inside = (expect * 4 - 2).norm(dim=1) < 1.95  # contraction: the cube's corners beyond radius 2 have no preimage
    u = f.unit_points(f.cell_points(cells, jitter))
    torch.testing.assert_close(u[inside], expect[inside], atol=1e-4, rtol=1e-4)


def test_occupancy_grid_follows_the_density_and_its_edits():
    f = field()
    assert f.update_occupancy(1.0) == pytest.approx(1.0)
    f.edits.set_crop((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5))
    for _ in range(200):  # the grid keeps a decaying maximum: empty cells fade out
        f.update_occupancy(1.0)
    occupied = f.update_occupancy(1.0)
    assert 0.05 < occupied < 0.3  # about the crop box's eighth of the volume, plus boundary cells
