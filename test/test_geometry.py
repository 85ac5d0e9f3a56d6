"""Depth to robust 3D points: the median over valid pixels lands on the object despite holes."""
import numpy as np
import torch

from textregion_ros.geometry import region_points
from textregion_ros.scene import backproject, make_scene


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
