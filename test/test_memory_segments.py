"""Segments (several objects' voxels in one sorted array) against each object on its own: a lookup equals
MemoryObject.next_to (itself checked against a set of every neighbour), a merge equals merge_voxels
(itself checked against binning the union), and a frame fused through segments equals the same frame
fused object by object."""
import copy

import numpy as np
import pytest

from textregion_ros.geometry.transform import RigidTransform
from textregion_ros.memory import Detection, MemoryConfig, ObjectMemory, Observation, associate, segments, store
from textregion_ros.memory.objects import MemoryObject, bin_points, neighbour_runs, voxel_keys

SIZE = 0.01


def objects(rng, n=6, spread=3.0):
    out = []
    for i in range(n):
        p = rng.uniform(0, 0.2, (int(rng.integers(1, 600)), 3)) + rng.uniform(-spread, spread, 3)
        out.append(MemoryObject(i + 1, np.ones(4, np.float32), SIZE, *bin_points(p, np.ones(len(p)), SIZE)))
    return out


def reach_of(objs, probes):
    """Each object's reach: its own keys and every probe aimed at it, with their neighbours."""
    lo = np.array([min(o.keys[0], k.min()) for o, k in zip(objs, probes)]) - (1 << 43)
    hi = np.array([max(o.keys[-1], k.max()) for o, k in zip(objs, probes)]) + (1 << 43)
    return lo, hi


def test_a_lookup_equals_each_object_alone():
    rng = np.random.default_rng(1)
    objs = objects(rng)
    probes = [np.unique(voxel_keys(o.points + rng.normal(0, 0.02, o.points.shape), SIZE)) for o in objs]
    probes[2] = np.unique(voxel_keys(rng.uniform(-3, 3, (50, 3)), SIZE))  # mostly far from object 3
    segs = segments.Segments(objs, *reach_of(objs, probes))
    assert segs.fits
    seg = np.concatenate([np.full(len(k), s) for s, k in enumerate(probes)])
    got = segs.next_to(seg, np.concatenate(probes))
    want = np.concatenate([o.next_to(neighbour_runs(k)) for o, k in zip(objs, probes)])
    assert 0 < want.sum() < len(want)
    np.testing.assert_array_equal(got, want)


def test_a_merge_equals_each_object_merging_alone():
    rng = np.random.default_rng(2)
    objs = objects(rng, 7)
    alone = copy.deepcopy(objs)
    adds = {s: bin_points(objs[s].points[::2] + rng.normal(0, 0.015, (len(objs[s].points[::2]), 3)),
                          np.ones(len(objs[s].points[::2])), SIZE) for s in (0, 2, 3, 6)}  # 1, 4, 5 untouched
    segs = segments.Segments(objs, *reach_of(objs, [adds.get(s, (o.keys,))[0] for s, o in enumerate(objs)]))
    seg = np.concatenate([np.full(len(adds[s][0]), s) for s in sorted(adds)])
    keys, sums, w = (np.concatenate([adds[s][f] for s in sorted(adds)]) for f in range(3))
    touched = segs.merge(seg, keys, sums, w)
    assert list(touched) == sorted(adds)
    for s, (o, a) in enumerate(zip(objs, alone)):
        if s in adds:
            a.merge_voxels(*adds[s])
        np.testing.assert_array_equal(o.keys, a.keys)
        np.testing.assert_allclose(o.sums, a.sums, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(o.weights, a.weights)
        if s in adds:  # its own arrays, not views that would keep the frame's union alive
            assert o.keys.base is None and o.sums.base is None and o.weights.base is None


def test_segments_that_cannot_share_an_int64_say_so():
    rng = np.random.default_rng(3)
    objs = objects(rng, 70)
    far = voxel_keys(np.array([[5000.0, 0, 0]]), SIZE)  # 500,000 voxels along x for one reach
    lo, hi = reach_of(objs, [o.keys for o in objs])
    hi[0] = far[0]
    assert not segments.Segments(objs, lo, hi).fits


def scene_frame(rng, memory, n=12, stray=False):
    dets = []
    for oid in sorted(memory.objects)[:n]:
        o = memory.objects[oid]
        p = o.points[rng.random(len(o.points)) < 0.7] + rng.normal(0, 0.004, (1, 3))
        if stray and not dets:
            p = np.vstack([p, [[3000.0, 0.0, 0.0]]])  # a flying pixel 3 km off: the segments cannot fit it
        dets.append(Detection(o.token, p, "thing", 0.9))
    return Observation(10**9, "c", RigidTransform.identity(), np.eye(3), None, dets)


@pytest.mark.parametrize("stray", [False, True])
def test_a_frame_fused_through_segments_equals_one_fused_object_by_object(stray, monkeypatch):
    rng = np.random.default_rng(4)
    memory = ObjectMemory(MemoryConfig(min_observations=1, merge_every=0))
    tokens = rng.standard_normal((12, 8)).astype(np.float32)
    tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
    first = [Detection(t, rng.uniform(0, 0.15, (400, 3)) + [i * 0.6, 0, 0], "thing", 0.9) for i, t in enumerate(tokens)]
    memory.integrate(Observation(1, "c", RigidTransform.identity(), np.eye(3), None, first))
    alone = copy.deepcopy(memory)
    frame = scene_frame(rng, memory, stray=stray)
    # Range cleaning would drop the stray point (faults.clean, test_memory_faults): here it must reach
    # association, so the frame takes the path for segments that do not fit.
    monkeypatch.setattr(store, "clean", lambda points, eye: points)
    fits = []
    monkeypatch.setattr(associate, "Segments", lambda *a: fits.append(segments.Segments(*a)) or fits[-1])
    got = memory.integrate(frame)
    assert [s.fits for s in fits] == [not stray]  # the stray frame went object by object on its own
    monkeypatch.setattr(associate, "Segments", NoFit)
    want = alone.integrate(copy.deepcopy(frame))
    assert got == want and all(got)
    for oid, o in memory.objects.items():
        a = alone.objects[oid]
        np.testing.assert_array_equal(o.keys, a.keys)
        np.testing.assert_allclose(o.sums, a.sums, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(o.weights, a.weights)
        np.testing.assert_allclose(o.token, a.token, atol=1e-6)
        np.testing.assert_allclose(np.array(o.hull()), np.array(a.hull()))


class NoFit(segments.Segments):
    """Segments that never fit: association and merging go object by object."""

    def __init__(self, objs, lo, hi):
        super().__init__(objs, lo, hi)
        self.fits = False
