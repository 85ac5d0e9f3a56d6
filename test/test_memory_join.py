"""faults.join_split on frames with many detections: a mask split into a chain of strips is one object even
where the strips' ends do not touch each other, and a cluttered frame's pairs still give the right groups."""
import numpy as np

from textregion_ros.memory.faults import join_split


def strip(x0: float, x1: float, rng, z: float = 1.0, step: float = 0.005) -> np.ndarray:
    """A flat strip of a table top (5 mm raster, 3 mm depth noise) from x0 to x1, 20 cm deep."""
    xs, ys = np.meshgrid(np.arange(x0, x1, step), np.arange(0.0, 0.2, step))
    p = np.c_[xs.ravel(), ys.ravel(), np.full(xs.size, z)]
    return p + rng.normal(0, 0.003, p.shape)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_a_chain_of_strips_is_one_object_and_a_gap_or_another_class_is_not():
    rng = np.random.default_rng(0)
    points = [strip(0.0, 0.1, rng), strip(0.1, 0.2, rng), strip(0.2, 0.3, rng),  # one object cut twice
              strip(0.5, 0.6, rng),  # 20 cm further: another object of the class
              strip(0.3, 0.4, rng)]  # touching the chain, but of another class
    mug, plate = unit(rng.normal(size=16)), unit(rng.normal(size=16))
    tokens = np.stack([mug, mug, mug, mug, plate]).astype(np.float32)
    groups = sorted(sorted(g) for g in join_split(points, tokens, 0.8))
    assert groups == [[0, 1, 2], [3], [4]], groups


def test_a_cluttered_frame_joins_what_touches_whatever_the_pair_order():
    """64 detections of one class: 8 rows of 8 strips, each row one table edge cut 8 times, rows 30 cm
    apart. Each row is one group, found with the rows' strips in any order."""
    rng = np.random.default_rng(1)
    points, row = [], []
    for r in range(8):
        for c in range(8):
            points.append(strip(0.05 * c, 0.05 * (c + 1), rng) + np.array([0.0, 0.4 * r, 0.0]))
            row.append(r)
    tokens = np.tile(unit(rng.normal(size=16)).astype(np.float32), (64, 1))
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(64)
        groups = join_split([points[i] for i in order], tokens[order], 0.8)
        got = sorted(sorted(row[order[i]] for i in g) for g in groups)
        assert got == [[r] * 8 for r in range(8)], got
