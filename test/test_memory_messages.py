"""The memory outputs' per-object message cache against building every message afresh: after fusing,
merging and removing objects, the cached messages equal a new cache's, field by field,
and only the objects that changed are built again."""
import numpy as np
from std_msgs.msg import Header

import textregion_ros.msg as trmsg
from textregion_ros.geometry.transform import RigidTransform
from textregion_ros.memory import Detection, MemoryConfig, ObjectMemory, Observation
from textregion_ros.ros.memory_messages import MemoryView, MessageCache, markers, objects_msg

DIM = 16


def unit(v):
    return (v / np.linalg.norm(v)).astype(np.float32)


def frame(memory, rng, picks, stamp, centres, tokens):
    dets = [Detection(unit(tokens[i] + 0.02 * rng.standard_normal(DIM)),
                      centres[i] + rng.uniform(0, 0.1, (300, 3)), f"thing{i % 3}", 0.8) for i in picks]
    memory.integrate(Observation(stamp, "cam", RigidTransform.identity(), np.eye(3), None, dets))


def serialized(view):
    """Both outputs, compared field by field (message equality): serialized CDR bytes are not comparable, as
    alignment padding is not cleared."""
    return objects_msg(trmsg, view), markers(view)


def test_cached_messages_equal_fresh_ones_and_only_changed_objects_are_rebuilt():
    rng = np.random.default_rng(0)
    centres, tokens = rng.uniform(-3, 3, (12, 3)), rng.standard_normal((12, DIM))
    memory = ObjectMemory(MemoryConfig(min_observations=1))
    cache = MessageCache()
    header = Header(frame_id="map")
    built = []
    for k in range(6):
        frame(memory, rng, range(12) if k == 0 else rng.choice(12, 4, replace=False), 10**9 * (k + 1), centres, tokens)
        if k == 3:
            memory._delete([min(memory.objects)])  # a removed object leaves both outputs
        objs = list(memory.objects.values())
        view = MemoryView(objs, header, None, 1000, cache)
        changed = {o.id for o in objs if o.last_seen_ns == 10**9 * (k + 1)}
        before = {o.id: o for o in objs}
        counting = lambda o: built.append(o.id) or o  # noqa: E731
        cache.get("count", objs, counting)
        assert set(built) == (set(before) if k == 0 else changed), k  # built again: the changed ones only
        built.clear()
        assert serialized(view) == serialized(MemoryView(objs, header, None, 1000, MessageCache())), k
        assert len(objects_msg(trmsg, view).objects) == len(memory) and \
            len(markers(view).markers) == 1 + 2 * len(memory)


def test_an_object_changed_in_place_by_a_merge_is_rebuilt():
    rng = np.random.default_rng(1)
    memory = ObjectMemory(MemoryConfig(min_observations=1, merge_every=0))
    t = unit(rng.standard_normal(DIM))
    for c in ((0.0, 0, 0), (0.05, 0, 0)):  # two overlapping boxes of one token: a duplicate pair
        memory._new(Detection(t, np.array(c) + rng.uniform(0, 0.1, (400, 3)), "mug", 0.9),
                    Observation(1, "cam", None, None, None))
    cache, header = MessageCache(), Header(frame_id="map")
    first = serialized(MemoryView(list(memory.objects.values()), header, None, 1000, cache))
    assert memory.merge_duplicates() == 1
    objs = list(memory.objects.values())
    view = MemoryView(objs, header, None, 1000, cache)
    assert serialized(view) == serialized(MemoryView(objs, header, None, 1000, MessageCache())) != first
    o = objs[0]
    np.testing.assert_allclose(o.oriented_box()[2], o._oriented_box()[2])  # the cached box follows the merge
