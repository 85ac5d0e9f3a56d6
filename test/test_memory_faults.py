"""The object memory on SAM2's and a depth camera's faults, with its default settings, over three seeds
(tabletop_scene.py): merged, split and spurious masks, a 4.5 cm lime, a book 3 cm thick with an orange
resting on it off its centre, two mugs 15 cm apart, a shelf, depth noise growing with distance, holes and
flying pixels; then a second sweep after a mug moved 0.5 m and the lime was taken away. Every check is
against the scene's true shapes and poses, never against the memory's own figures."""
from __future__ import annotations

import numpy as np
import pytest

from memory_scene import render
from tabletop_scene import FX, HEIGHT, WIDTH, class_tokens, moved, observation, tabletop, trajectory, view
from textregion_ros.memory import MemoryConfig, ObjectMemory

SEEDS = (0, 1, 2)
BLOB = "blob"  # the spurious masks' label: no real object


@pytest.fixture(scope="module")
def runs():
    things, poses = tabletop(), trajectory(60)
    second, poses2 = moved(things), trajectory(60)[::2]
    tokens = class_tokens(things)
    clean1 = [render(things, p, WIDTH, HEIGHT, f=FX) for p in poses]  # geometry is shared by the seeds
    clean2 = [render(second, p, WIDTH, HEIGHT, f=FX) for p in poses2]
    out = {}
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        memory = ObjectMemory()  # the defaults the node ships
        seen, faults, limes = np.zeros(len(things), int), [], set()
        for k, (p, r) in enumerate(zip(poses, clean1)):
            v = view(things, p, tokens, rng, clean=r)
            seen[v.visible] += 1
            faults += v.faults
            memory.integrate(observation(v, k))
            limes |= {o.id for o in memory.objects.values() if o.label == "lime"}
        first = snapshot(memory)
        for k, (p, r) in enumerate(zip(poses2, clean2)):
            v = view(second, p, tokens, rng, clean=r)
            faults += v.faults
            memory.integrate(observation(v, len(poses) + k))
        out[seed] = dict(first=first, second=snapshot(memory), memory=memory, seen=seen, faults=faults, limes=limes)
    return things, second, tokens, out


def snapshot(memory: ObjectMemory):
    """(label, centroid, points, observations, token) of every object, at this moment."""
    return [(o.label, o.centroid.copy(), o.points.copy(), o.observations, o.token.copy())
            for o in memory.objects.values()]


def established(objs):
    return [o for o in objs if o[3] >= MemoryConfig().min_observations]


def in_box(points, thing, margin=0.01):
    axes = thing.axes()
    local = (points - thing.centre) @ axes
    half = thing.size / 2 + margin
    if thing.kind == "sphere":
        return np.linalg.norm(points - thing.centre, axis=1) <= half[0]
    return (np.abs(local) <= half).all(1)


def assigned(objs, things):
    """Each established object with a real label -> the real object of that label its centroid is inside
    (grown by 5 cm), or -1 for none."""
    out = []
    for o in established(objs):
        hits = [i for i, t in enumerate(things) if t.name == o[0] and in_box(o[1][None], t, 0.05)[0]]
        out.append(min(hits, key=lambda i: np.linalg.norm(things[i].centre - o[1])) if hits else -1)
    return out


def test_the_scene_has_the_faults_it_claims(runs):
    _, _, _, out = runs
    for seed, r in out.items():
        kinds = [f.split()[0] for f in r["faults"]]
        # 10% merged, 15% split, 20% blobs of 90 views (a merge or split needs a pair or a big mask)
        assert 3 <= kinds.count("merged") <= 20 and 5 <= kinds.count("split") <= 26 and \
            8 <= kinds.count("blob") <= 32, (seed, kinds)


def test_every_object_seen_in_five_views_is_remembered_once(runs):
    things, _, _, out = runs
    per_object = []
    for seed, r in out.items():
        objs = r["first"]
        where = assigned(objs, things)
        counts = [where.count(i) for i in range(len(things))]
        for i, t in enumerate(things):
            if r["seen"][i] >= 5:
                assert counts[i] >= 1, (seed, t.name, t.centre, [(o[0], o[1].round(3)) for o in objs])
        assert max(counts) < 3, (seed, counts)
        assert -1 not in where, (seed, [(o[0], o[1].round(2)) for o, w in zip(established(objs), where) if w < 0])
        assert all(o[0] != BLOB for o in established(objs)), seed  # spurious blobs stay noise
        per_object.append(sum(counts) / len(things))
    assert np.mean(per_object) <= 1.1, per_object


def test_centroids_are_within_two_centimetres_median_and_five_at_most(runs):
    things, _, _, out = runs
    errors = []
    for seed, r in out.items():
        objs = established(r["first"])
        for t in things:
            near = [np.linalg.norm(o[1] - t.centre) for o in objs if o[0] == t.name]
            errors.append(min(near))
    errors = np.array(errors)
    assert np.median(errors) <= 0.02 and errors.max() <= 0.05, errors.round(3)


def test_the_two_mugs_stay_two_objects_each_with_little_of_the_other(runs):
    things, second, _, out = runs
    for seed, r in out.items():
        for objs, scene in ((r["first"], things), (r["second"], second)):
            mugs = [t for t in scene if t.name == "mug"]
            found = [o for o in established(objs) if o[0] == "mug"]
            assert len(found) == 2, (seed, [o[1].round(3) for o in found])
            for m in mugs:
                mine = min(found, key=lambda o: np.linalg.norm(o[1] - m.centre))
                other = next(t for t in mugs if t is not m)
                assert in_box(mine[2], other).mean() < 0.25, seed


def test_find_ranks_the_right_object_first_for_every_class(runs):
    things, _, tokens, out = runs
    for seed, r in out.items():
        memory = r["memory"]
        ids, table = memory.tokens()
        for name in sorted({t.name for t in things} - {"lime"}):
            cos = table @ tokens[name]
            best = memory.rank(ids, cos, cos, 1)[0][0]
            truth = [t for t in moved(things) if t.name == name]
            assert best.label == name and min(np.linalg.norm(best.centroid - t.centre) for t in truth) <= 0.05, \
                (seed, name, best.label, best.centroid)


def test_after_the_second_sweep_the_moved_mug_is_there_once_and_the_lime_is_gone(runs):
    things, second, _, out = runs
    new_mug, old_mug = second[2].centre, things[2].centre
    lime = next(t for t in things if t.name == "lime")
    for seed, r in out.items():
        objs = r["second"]
        at_new = [o for o in objs if o[0] == "mug" and np.linalg.norm(o[1] - new_mug) <= 0.05]
        assert len(at_new) == 1 and np.linalg.norm(at_new[0][1] - new_mug) <= 0.03, (seed, at_new)
        assert not [o for o in objs if np.linalg.norm(o[1] - old_mug) <= 0.05], seed  # nothing left behind
        assert not [o for o in objs if o[0] == "lime" or np.linalg.norm(o[1] - lime.centre) <= 0.05], seed


def test_the_small_lime_was_never_removed_while_it_was_seen(runs):
    """Far views give the 4.5 cm lime fewer depth points than min_points: those count as seen by the
    detection's footprint, so the lime is one object seen all along, not removed and re-created."""
    things, _, _, out = runs
    lime = next(t for t in things if t.name == "lime")
    for seed, r in out.items():
        limes = [o for o in r["first"] if o[0] == "lime"]
        assert len(limes) == 1 and np.linalg.norm(limes[0][1] - lime.centre) <= 0.02, seed
        assert len(r["limes"]) == 1, (seed, r["limes"])  # one lime object all sweep long: never re-created
        assert r["memory"].counts["seen_by_footprint"] > 0
