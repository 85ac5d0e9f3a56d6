"""Depth to robust 3D points: the median over valid pixels lands on the object despite holes."""
import numpy as np
import torch

from textregion_ros.geometry import region_points
from textregion_ros.eval.scene import backproject, make_scene


def test_point_lies_on_the_object_despite_holes_and_background_leakage():
    s = make_scene(hole_fraction=0.15)
    mask = torch.from_numpy(s.object_mask).clone()
    ys, xs = np.nonzero(s.object_mask)
    # A sloppy mask: 20% extra pixels of background beside the object.
    mask[ys.min():ys.max(), xs.max():xs.max() + (xs.max() - xs.min()) // 5] = True
    pts = region_points(mask[None], torch.from_numpy(s.depth_m), torch.from_numpy(s.K), stride=1)
    x, y, z = pts[0].tolist()
    assert abs(z - s.object_depth_m) < 0.01
    u = x * s.K[0, 0] / z + s.K[0, 2]
    v = y * s.K[1, 1] / z + s.K[1, 2]
    assert xs.min() <= u <= xs.max() and ys.min() <= v <= ys.max()
    cx, cy, _ = backproject((xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, z, s.K)
    assert abs(x - cx) < 0.05 and abs(y - cy) < 0.05


def test_no_valid_depth_gives_nan_and_zero_regions():
    depth = torch.full((4, 5), float("nan"))
    depth[0, 0] = 0.0
    mask = torch.ones(1, 4, 5, dtype=torch.bool)
    K = torch.tensor([[1.0, 0, 2], [0, 1.0, 2], [0, 0, 1]])
    assert torch.isnan(region_points(mask, depth, K)).all()
    assert region_points(torch.zeros(0, 4, 5, dtype=torch.bool), depth, K).shape == (0, 3)


def test_masked_quantiles_equal_torch_nanquantile_over_each_member_set():
    """Counting along one sort per row against torch's own nanquantile on NaN-filled copies: random
    sets, empty and one-member sets, ties, NaN and inf outside the sets, the node's quantiles."""
    from textregion_ros.geometry.points import masked_quantiles
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        c, p, r = 3, int(torch.randint(1, 400, (1,), generator=g)), int(torch.randint(1, 12, (1,), generator=g))
        values = torch.randn(c, p, generator=g)
        if trial % 2:  # ties, as quantized depth has
            values = (values * 4).round() / 4
        members = torch.rand(r, p, generator=g) < torch.rand(r, 1, generator=g)
        members[0] = False  # an empty set
        if r > 1:
            members[1] = False
            members[1, int(torch.randint(0, p, (1,), generator=g))] = True  # one member
        outside = ~members.any(0)
        values[:, outside] = torch.where(torch.rand(int(outside.sum()), generator=g) < 0.5,
                                         float("nan"), float("inf"))
        q = (0.02, 0.5, 0.98, 0.0, 1.0, 0.3)
        got = masked_quantiles(values, members, q)
        filled = torch.where(members[:, None, :], values[None], torch.tensor(float("nan")))  # (R, C, P)
        want = torch.nanquantile(filled, torch.tensor(q), dim=-1)  # (Q, R, C)
        assert got.shape == want.shape == (len(q), r, c)
        assert torch.equal(torch.isnan(got), torch.isnan(want))
        assert torch.allclose(got.nan_to_num(), want.nan_to_num(), atol=1e-5, rtol=0), (trial, (got - want).abs().max())
