"""Point prompts from a planted similarity map: positives inside the planted object, negatives outside."""
import numpy as np
import pytest
import torch

from textregion_ros.frames.prompt_points import prompt_points, spread_extremes


def planted(seed, grid=(24, 32), frame=(480, 640)):
    """A map that is high inside one ellipse (the object), low elsewhere, with noise; and the object's mask."""
    rng = np.random.default_rng(seed)
    gh, gw = grid
    cy, cx = rng.uniform(5, gh - 5), rng.uniform(5, gw - 5)
    ry, rx = rng.uniform(2.5, 4.5), rng.uniform(3, 6)
    yy, xx = np.mgrid[0:gh, 0:gw] + 0.5
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    sim = np.where(inside, 0.3, 0.05) + rng.normal(0, 0.02, grid)
    h, w = frame
    fy, fx = np.mgrid[0:h, 0:w] + 0.5
    mask = ((fy * gh / h - cy) / ry) ** 2 + ((fx * gw / w - cx) / rx) ** 2 <= 1
    return torch.tensor(sim, dtype=torch.float32), mask


@pytest.mark.parametrize("seed", range(8))
def test_positives_land_inside_the_planted_object_and_negatives_outside(seed):
    sim, mask = planted(seed)
    points, labels = prompt_points(sim, mask.shape, positives=3, negatives=3, radius=1)
    assert (labels == 1).sum() >= 1 and (labels == 0).sum() == 3
    for (x, y), label in zip(points.numpy(), labels.numpy()):
        assert mask[int(y), int(x)] == bool(label), (x, y, label)


def test_peaks_are_spread_by_non_maximum_suppression():
    sim = torch.zeros(10, 10)
    sim[2, 2], sim[2, 3], sim[7, 7] = 1.0, 0.9, 0.8  # two neighbours and a distant peak
    top = spread_extremes(sim, 2, radius=1)
    assert sorted(top.tolist()) == [2 * 10 + 2, 7 * 10 + 7]  # the neighbour of the best is suppressed
    assert spread_extremes(sim, 0, 1).numel() == 0
