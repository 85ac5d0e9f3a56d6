"""The memory's voxel arithmetic against plain oracles: a frame binned in one pass equals each detection
binned on its own (np.unique per detection), a sorted merge equals binning the union, the neighbour
offsets equal unpacking and repacking, the percentile box equals np.quantile, and the visibility test
of many objects at once equals the rule applied to each object alone."""
import numpy as np
import pytest

from textregion_ros.geometry.transform import RigidTransform
from textregion_ros.memory import MemoryConfig, ObjectMemory, Observation
from textregion_ros.memory import frame_voxels
from textregion_ros.memory.frame_voxels import _bin_each as bin_each, bin_frame
from textregion_ros.memory.objects import (NEIGHBOURS, MemoryObject, bin_points, key_indices, merged_positions,
                                           neighbour_keys, neighbour_runs, pack, percentiles, voxel_keys)


def oracle_bins(points, size):
    """Per detection: the sorted unique voxels with their point sums and counts, by a dict."""
    out = []
    for p in points:
        acc = {}
        for q in p:
            k = tuple(np.floor(q / size).astype(np.int64))
            s, n = acc.get(k, (np.zeros(3), 0))
            acc[k] = (s + q, n + 1)
        keys = pack(np.array(sorted(acc), np.int64).reshape(-1, 3))
        order = np.argsort(keys)
        vals = [acc[k] for k in sorted(acc)]
        out.append((keys[order], np.array([v[0] for v in vals])[order], np.array([v[1] for v in vals])[order]))
    return out


# (stray point, binned by): none packs into 31-bit codes; 400 m along x needs 64-bit codes; a kilometre on every
# axis still packs; 9 km on every axis does not fit 62 bits; one huge detection among small ones would be
# mostly padding as rows. The last two take the exact path.
@pytest.mark.parametrize("stray, exact_path", [(None, False), ((400.0, 0.0, 0.0), False),
                                               ((1000.0, -1000.0, 1000.0), False), ((9000.0, -9000.0, 9000.0), True),
                                               ("unbalanced", True)])
def test_a_frame_binned_at_once_equals_each_detection_binned_alone(stray, exact_path, monkeypatch):
    rng = np.random.default_rng(3)
    points = [rng.normal(c, 0.05, (n, 3)) for c, n in zip(rng.uniform(-5, 5, (8, 3)), (1, 1, 5, 300, 40, 2, 900, 77))]
    # Two one-point detections in a row: each is voxel (0, 0, 0) of its own, two voxels and not one.
    if stray == "unbalanced":
        points += [rng.normal(0, 0.3, (30000, 3))] + [rng.normal(1, 0.01, (3, 3)) for _ in range(20)]
    elif stray:
        points[3] = np.vstack([points[3], [stray]])
    exact = []
    monkeypatch.setattr(frame_voxels, "_bin_each", lambda *a: exact.append(1) or bin_each(*a))
    vox = bin_frame(points, 0.01)
    assert len(exact) == exact_path  # which path binned it
    assert len(vox) == len(points)
    for d, (k, s, n) in enumerate(oracle_bins(points, 0.01)):
        vk, vs, vw = vox.of(d)
        np.testing.assert_array_equal(vk, k)
        np.testing.assert_allclose(vs, s, atol=1e-9)
        np.testing.assert_array_equal(vw, n)
    lo, hi = vox.bounds()
    for d, p in enumerate(points):
        means = vox.of(d)[1] / vox.of(d)[2][:, None]
        np.testing.assert_allclose(lo[d], means.min(0))
        np.testing.assert_allclose(hi[d], means.max(0))


def test_sampled_voxels_are_evenly_spaced_voxels_of_each_detection():
    rng = np.random.default_rng(4)
    points = [rng.uniform(0, 0.3, (2000, 3)), rng.uniform(1, 1.02, (3, 3))]
    vox = bin_frame(points, 0.01)
    sampled, first = vox.sampled(48)
    assert list(np.diff(first)) == [48, len(vox.of(1)[0])]
    for d in range(2):
        keys = vox.of(d)[0]
        centre = sampled[first[d]:first[d + 1]]
        assert np.isin(centre, keys).all() and len(np.unique(centre)) == len(centre)
        assert centre[0] == keys[0] and centre[-1] == keys[-1]


def test_neighbour_offsets_equal_unpacking_and_repacking():
    keys = voxel_keys(np.random.default_rng(5).uniform(-5000, 5000, (500, 3)), 0.01)
    repacked = pack((key_indices(keys)[:, None, :] + NEIGHBOURS[None]).reshape(-1, 3)).reshape(len(keys), 27)
    np.testing.assert_array_equal(neighbour_keys(keys), repacked)
    runs = neighbour_runs(keys)  # nine runs of three consecutive keys are the 27 neighbours
    np.testing.assert_array_equal(np.sort((runs[:, :, None] + np.arange(3)).reshape(len(keys), 27), 1),
                                  np.sort(repacked, 1))


def test_next_to_equals_a_set_of_every_neighbour():
    rng = np.random.default_rng(8)
    obj = MemoryObject(1, np.ones(4, np.float32), 0.02, *bin_points(rng.uniform(0, 0.3, (300, 3)), np.ones(300),
                                                                      0.02))
    probe = np.unique(voxel_keys(rng.uniform(-0.1, 0.4, (400, 3)), 0.02))
    held = set(obj.keys.tolist())
    want = [any(int(k) in held for k in row) for row in neighbour_keys(probe)]
    assert 0 < sum(want) < len(want)  # both answers occur
    np.testing.assert_array_equal(obj.next_to(neighbour_runs(probe)), want)


def test_a_sorted_merge_equals_binning_the_union():
    rng = np.random.default_rng(6)
    a, b = rng.uniform(0, 0.2, (700, 3)), rng.uniform(0.1, 0.3, (400, 3))
    obj = MemoryObject(1, np.ones(4, np.float32), 0.02, *bin_points(a, np.ones(len(a)), 0.02))
    obj.merge_voxels(*bin_points(b, np.ones(len(b)), 0.02))
    keys, sums, w = bin_points(np.vstack([a, b]), np.ones(1100), 0.02)
    np.testing.assert_array_equal(obj.keys, keys)
    np.testing.assert_allclose(obj.sums, sums)
    np.testing.assert_array_equal(obj.weights, w)
    lo, hi = obj.hull()
    assert (lo <= obj.points.min(0)).all() and (hi >= obj.points.max(0)).all()


@pytest.mark.parametrize("na, nb, span", [(0, 5, 10), (5, 0, 10), (1, 1, 1), (300, 200, 400), (3000, 2000, 10**12),
                                          (50, 400, 60)])
def test_merged_positions_equal_a_binary_search(na, nb, span):
    """One stable sort of the two arrays end to end gives np.searchsorted's positions and the hits, for keys
    before, between, on and after the sorted ones, and repeated probes."""
    rng = np.random.default_rng(na + nb)
    a = np.unique(rng.integers(-span, span, na))
    b = np.sort(np.r_[rng.choice(a, min(len(a), nb // 2)) if len(a) else [], rng.integers(-2 * span, 2 * span,
                                                                                       nb - min(len(a), nb // 2))]
                ).astype(np.int64)
    pos, hit = merged_positions(a, b)
    np.testing.assert_array_equal(pos, np.searchsorted(a, b))
    np.testing.assert_array_equal(hit, np.isin(b, a))
    if len(a) and len(b):
        assert hit.any() and (~hit).any() or na == 1


@pytest.mark.parametrize("n", [2, 3, 10, 101, 2000])
def test_the_percentile_box_equals_numpy_quantile(n):
    p = np.random.default_rng(n).normal(size=(n, 3))
    lo, hi = percentiles(p, 0.01, 0.99)
    ref = np.quantile(p, [0.01, 0.99], axis=0)
    np.testing.assert_allclose(lo, ref[0], atol=1e-12)
    np.testing.assert_allclose(hi, ref[1], atol=1e-12)


def visible_alone(obj, obs, tol, samples=32):
    """The rule for one object, written out: sampled points inside the image, with depth, not hidden."""
    p = obj.points[np.linspace(0, len(obj.points) - 1, min(len(obj.points), samples)).astype(int)]
    cam = obs.pose.inverse().points(p)
    h, w = obs.depth_m.shape
    ok_in, ok_depth, ok_behind = 0, 0, 0
    for x, y, z in cam:
        if z <= 0.05:
            continue
        u, v = obs.K[0, 0] * x / z + obs.K[0, 2], obs.K[1, 1] * y / z + obs.K[1, 2]
        if not (0 <= u < w - 0.5 and 0 <= v < h - 0.5):
            continue
        ok_in += 1
        d = obs.depth_m[int(round(v)), int(round(u))]
        if np.isfinite(d) and d > 0:
            ok_depth += 1
            ok_behind += d >= z - tol
    return ok_in >= 0.5 * len(p) and ok_depth >= 0.5 * ok_in and ok_depth > 0 and ok_behind >= 0.5 * ok_depth


def test_visibility_of_many_objects_at_once_equals_each_alone():
    rng = np.random.default_rng(7)
    K = np.array([[100.0, 0, 40], [0, 100.0, 30], [0, 0, 1]])
    depth = rng.uniform(0.5, 4.0, (60, 80)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.2] = np.nan
    objs = []
    for i in range(60):
        c = np.r_[rng.uniform(-1.5, 1.5, 2), rng.uniform(-0.5, 4.0)]
        p = c + rng.uniform(-0.1, 0.1, (int(rng.integers(1, 300)), 3))
        objs.append(MemoryObject(i + 1, np.ones(4, np.float32), 0.01, *bin_points(p, np.ones(len(p)), 0.01)))
    obs = Observation(0, "c", RigidTransform.identity(), K, depth, [])
    memory = ObjectMemory(MemoryConfig())
    got = memory.should_see(objs, obs)
    want = [visible_alone(o, obs, memory.config.depth_tolerance) for o in objs]
    assert list(got) == want
    assert 0 < sum(want) < len(want)  # the scene has both kinds
