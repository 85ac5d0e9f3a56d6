"""The node's object memory over DDS: a 44-view sweep around the ray-cast room, its TF published by
the test, colour masks standing in for SAM2 (the room's true instance masks) and the planted encoder.
Each check is against where the room's objects really are."""
import os

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped, TransformStamped
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

import textregion_ros.msg as trmsg
from memory_scene import ColourMasks, FaultyColourMasks, circle, look_at, render, room, room_encoder
from ros_harness import Harness
from textregion_ros.config import preset
from textregion_ros.geometry.transform import quaternion_xyzw
from textregion_ros.pipeline import Pipeline
from textregion_ros.srv import Find

THINGS = room()
CAMERA = "camera_color_optical_frame"


def room_pipeline():
    cfg = preset("cpu-lite", random_weights=True, tiles="none", vocabulary=tuple(t.name for t in THINGS),
                 background=("floor",))
    return Pipeline(cfg, encoder=room_encoder(THINGS), mask_source=ColourMasks(THINGS))


def memory_params(path, frame="map"):
    return [Parameter("memory", value=True), Parameter("memory_frame", value=frame),
            Parameter("memory_file", value=str(path)), Parameter("memory_save_every", value=0.0),
            # Every fused frame's whole map, so each check reads the state after its own frame.
            Parameter("memory_publish_every", value=0.0),
            Parameter("vocabulary", value=[t.name for t in THINGS]), Parameter("background", value=["floor"]),
            Parameter("tf_timeout", value=1.0), Parameter("tracking", value=False)]


class Room:
    """Publishes the camera's pose on /tf at each frame's stamp, then the frame."""

    def __init__(self, h):
        self.h = h
        self.tf = h.tester.create_publisher(TFMessage, "/tf", 100)
        self.objects = []
        h.tester.create_subscription(trmsg.MemoryObjectArray, "memory/objects", self.objects.append, 10)
        self.grounded = []
        h.tester.create_subscription(PoseStamped, "memory/grounded", self.grounded.append, 10)
        assert h.wait(lambda: self.tf.get_subscription_count() > 0, 10)

    def pose_msg(self, pose, stamp, bad=False):
        ts = TransformStamped()
        ts.header.stamp, ts.header.frame_id, ts.child_frame_id = stamp, "map", CAMERA
        q = quaternion_xyzw(pose.R)
        r, t = ts.transform.rotation, ts.transform.translation
        r.x, r.y, r.z, r.w = (float(v) for v in q)
        t.x, t.y, t.z = (float("nan") if bad else float(v) for v in pose.t)
        return TFMessage(transforms=[ts])

    def view(self, pose, tf=True, bad_tf=False):
        h = self.h
        h.wait_idle()
        fused = h.node.stats.snapshot().get("memory/fused", 0)
        r = render(THINGS, pose)
        stamp = h.now()
        if tf:
            self.tf.publish(self.pose_msg(pose, stamp, bad_tf))
        depth = np.nan_to_num(r.depth_m, nan=0.0)
        h.send(r.rgb, depth, r.K, stamp=stamp, frame_id=CAMERA)
        h.wait_idle()
        return fused


def find(h, query, n=0):
    client = h.tester.create_client(Find, "find")
    assert client.wait_for_service(10)
    future = client.call_async(Find.Request(query=query, max_results=n))
    assert h.wait(future.done, 60)
    return future.result()


def trigger(h, name):
    client = h.tester.create_client(Trigger, name)
    assert client.wait_for_service(10)
    future = client.call_async(Trigger.Request())
    assert h.wait(future.done, 60)
    return future.result()


def centroid(o):
    return np.array([o.centroid.x, o.centroid.y, o.centroid.z])


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    rclpy.init()
    path = tmp_path_factory.mktemp("memory") / "room.npz"
    pipeline = room_pipeline()
    h = Harness(namespace="/mem", pipeline=pipeline, extra=memory_params(path))
    rm = Room(h)
    h.query("red mug")
    assert h.wait(lambda: h.node.parts.active_query == "red mug", 10)
    for pose in circle(44):
        before = rm.view(pose)
        assert h.wait(lambda b=before: h.node.stats.snapshot().get("memory/fused", 0) > b, 30), \
            h.node.stats.snapshot()
    for y in (-1.0, 1.0):  # then the camera looks away: nothing of the room is in view
        rm.view(look_at((1.6, 0.0, 0.9), (4.0, y, 0.0)))
    try:
        yield h, rm, path, pipeline
    finally:
        h.close()
        rclpy.shutdown()


def test_the_sweep_remembers_each_object_once_within_a_centimetre(swept):
    h, rm, _, _ = swept
    assert h.wait(lambda: rm.objects, 10)
    objs = rm.objects[-1].objects
    assert rm.objects[-1].header.frame_id == "map"
    assert sorted(o.label for o in objs) == sorted(t.name for t in THINGS), [o.label for o in objs]
    for o in objs:
        truth = next(t for t in THINGS if t.name == o.label)
        assert np.linalg.norm(centroid(o) - truth.centre) <= 0.01, (o.label, centroid(o), truth.centre)
        assert o.times_seen >= 10 and o.camera == CAMERA
    snap = h.node.stats.snapshot()
    assert snap.get("errors/memory", 0) == 0
    # Fusion is timed inside the stage's whole frame (TF, back-projection, fusion, the memory outputs).
    assert 0 < snap["memory_fuse_mean_s"] < snap["memory_stage_mean_s"]
    # Its thread's CPU time beside it: one thread's CPU cannot exceed the wall time it ran for.
    assert 0 < snap["memory_fuse_cpu_mean_s"] <= snap["memory_fuse_mean_s"] + 1e-3


def test_find_answers_every_class_out_of_view_and_memory_grounded_follows_the_query(swept):
    h, rm, _, _ = swept
    for t in THINGS:
        reply = find(h, t.name, 3)
        assert reply.success and reply.found and reply.header.frame_id == "map", reply.message
        best = reply.objects[0]
        assert best.label == t.name and np.linalg.norm(centroid(best) - t.centre) <= 0.01
        assert best.score >= reply.objects[-1].score and len(reply.objects) == 3
    g = rm.grounded[-1]  # the active query, "red mug", out of view in the last frames
    mug = next(t for t in THINGS if t.name == "red mug")
    assert g.header.frame_id == "map"
    assert np.linalg.norm(np.array([g.pose.position.x, g.pose.position.y, g.pose.position.z]) - mug.centre) <= 0.01


@pytest.fixture(scope="module")
def faulty(swept, tmp_path_factory):
    """The same sweep through a second node whose given masks have SAM2's faults (FaultyColourMasks): merged,
    split and spurious masks, drawn from a seeded generator."""
    cfg = preset("cpu-lite", random_weights=True, tiles="none", vocabulary=tuple(t.name for t in THINGS),
                 background=("floor",))
    masks = FaultyColourMasks(THINGS, seed=5)
    pipeline = Pipeline(cfg, encoder=room_encoder(THINGS), mask_source=masks)
    h = Harness(namespace="/memfaults", pipeline=pipeline,
                extra=memory_params(tmp_path_factory.mktemp("faults") / "room.npz"), subscribe=False)
    rm = Room(h)
    for pose in circle(28, start_deg=4.0):
        before = rm.view(pose)
        assert h.wait(lambda b=before: h.node.stats.snapshot().get("memory/fused", 0) > b, 30)
    try:
        yield h, rm, masks
    finally:
        h.close()


def test_with_sams_faults_in_the_masks_each_object_is_remembered_once_and_found(faulty):
    h, rm, masks = faulty
    assert {"merged", "split", "blob"} <= set(masks.faults), masks.faults  # the faults were there
    assert h.wait(lambda: rm.objects, 10)
    objs = rm.objects[-1].objects
    assert sorted(o.label for o in objs) == sorted(t.name for t in THINGS), [o.label for o in objs]
    for o in objs:
        truth = next(t for t in THINGS if t.name == o.label)
        assert np.linalg.norm(centroid(o) - truth.centre) <= 0.02, (o.label, centroid(o), truth.centre)
    for t in THINGS:
        reply = find(h, t.name, 1)
        assert reply.found and reply.objects[0].label == t.name, (t.name, reply.message)
    assert not any(k.startswith("errors/") for k in h.node.stats.snapshot())


def test_hostile_queries_transforms_and_frames_are_counted_and_the_memory_stays(swept):
    h, rm, _, _ = swept
    n = len(rm.objects[-1].objects)
    snap = h.node.stats.snapshot
    for q in (" ; ;; ", "q" * 1025):
        reply = find(h, q)
        assert not reply.success and "rejected" in reply.message
    assert snap().get("bad_input/query", 0) >= 2
    pose = circle(44)[5]
    missing = snap().get("memory/no_transform", 0)
    rm.view(pose, tf=False)  # no transform at this stamp
    assert h.wait(lambda: snap().get("memory/no_transform", 0) > missing, 10)
    bad = snap().get("bad_input/transform", 0)
    rm.view(pose, bad_tf=True)  # NaN translation: refused, and the frame has no transform either
    assert h.wait(lambda: snap().get("bad_input/transform", 0) > bad, 10)
    assert h.wait(lambda: snap().get("memory/no_transform", 0) > missing + 1, 10)
    assert len(find(h, "red mug", 100).objects) == n and h.node.parts.alive()
    # One transform stamped at sec 2**31 - 1, then one making map the camera's child: both refused and
    # counted, and the next good frame still fuses (neither stops the memory for the rest of the node's life).
    far = rm.pose_msg(pose, h.now())
    far.transforms[0].header.stamp.sec = 2**31 - 1
    loop = rm.pose_msg(pose, h.now())
    loop.transforms[0].header.frame_id, loop.transforms[0].child_frame_id = CAMERA, "map"
    bad = snap().get("bad_input/transform", 0)
    for msg in (far, loop):
        rm.tf.publish(msg)
    assert h.wait(lambda: snap().get("bad_input/transform", 0) >= bad + 2, 10), snap()
    fused = rm.view(pose)
    assert h.wait(lambda: snap().get("memory/fused", 0) > fused, 30), snap()


def test_save_restart_load_gives_the_same_objects(swept):
    h, rm, path, pipeline = swept
    reply = trigger(h, "memory/save")
    assert reply.success and os.path.exists(path), reply.message
    before = {o.id: (o.label, centroid(o), o.times_seen) for o in find(h, "red mug", 100).objects}
    h2 = Harness(namespace="/mem2", pipeline=pipeline, extra=memory_params(path))
    try:
        after = {o.id: (o.label, centroid(o), o.times_seen) for o in find(h2, "red mug", 100).objects}
    finally:
        h2.close()
    assert sorted(after) == sorted(before)
    for oid, (label, c, seen) in before.items():
        assert after[oid][0] == label and np.allclose(after[oid][1], c) and after[oid][2] == seen


def test_a_corrupt_file_is_refused_kept_untouched_and_the_node_starts_empty(swept, tmp_path):
    h, _, _, pipeline = swept
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 this is not a memory file")
    before = path.read_bytes()
    h2 = Harness(namespace="/mem3", pipeline=pipeline, extra=memory_params(path))
    try:
        assert h2.node.stats.snapshot().get("bad_input/memory_file", 0) == 1
        reply = find(h2, "red mug")
        assert reply.success and not reply.objects and "nothing is remembered" in reply.message
        saved = trigger(h2, "memory/save")
        assert saved.success and "recovered" in saved.message
    finally:
        h2.close()
    assert path.read_bytes() == before


def test_a_memory_frame_that_does_not_exist_is_counted_and_the_node_stays_up(swept, tmp_path):
    h, _, _, pipeline = swept
    h2 = Harness(namespace="/mem4", pipeline=pipeline, extra=memory_params(tmp_path / "m.npz", frame="nowhere"))
    try:
        r = render(THINGS, circle(44)[0])
        h2.send(r.rgb, np.nan_to_num(r.depth_m, nan=0.0), r.K, frame_id=CAMERA)
        assert h2.wait(lambda: h2.node.stats.snapshot().get("memory/no_transform", 0) >= 1, 30)
        assert h2.node.parts.alive() and not find(h2, "red mug").objects
    finally:
        h2.close()


def test_rviz_shows_the_memory_topics_this_node_publishes(swept):
    import yaml
    from ros_harness import ROOT

    h = swept[0]
    with open(os.path.join(ROOT, "config", "perceive.rviz")) as f:
        displays = yaml.safe_load(f)["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays if "Topic" in d and "/memory/" in d["Topic"]["Value"]}
    published = {name.replace("/mem/", "/textregion/") for name, _ in h.node.get_publisher_names_and_types_by_node(
        "textregion", "/mem")}
    assert len(topics) == 3 and topics <= published, topics - published


def test_the_whole_map_waits_for_memory_publish_every_and_grounded_does_not(swept):
    """memory/objects (like markers and cloud) holds every object, so it is published at most every
    memory_publish_every seconds; memory/grounded follows every fused frame. A state held back goes out
    when its period is over, without waiting for another frame, and the runtime knob reaches the stage."""
    h, rm, _, _ = swept
    stamp = lambda m: m.header.stamp.sec * 10**9 + m.header.stamp.nanosec  # noqa: E731
    fused = lambda: h.node.stats.snapshot().get("memory/fused", 0)  # noqa: E731
    # Every earlier fused frame's map has arrived here (each was published: the period was 0).
    assert h.wait(lambda: len(rm.objects) == fused(), 10), (len(rm.objects), fused())
    h.node.set_parameters([Parameter("memory_publish_every", value=1000.0)])
    try:
        objects, grounded = len(rm.objects), len(rm.grounded)
        for pose in circle(44)[:3]:
            before = rm.view(pose)
            assert h.wait(lambda b=before: fused() > b, 30)
        assert h.wait(lambda: len(rm.grounded) >= grounded + 3, 10)
        assert len(rm.objects) == objects  # held back by the period
        h.node.set_parameters([Parameter("memory_publish_every", value=0.0)])
        assert h.wait(lambda: len(rm.objects) > objects, 10)  # the held state, with no new frame
        assert stamp(rm.objects[-1]) == stamp(rm.grounded[-1])  # the newest state: the last fused frame's
    finally:
        h.node.set_parameters([Parameter("memory_publish_every", value=0.0)])


# Last in this module: it clears the memory the tests above share.
def test_bursts_from_one_client_and_from_twenty_are_each_answered_and_shedding_is_counted(swept):
    """100 requests to each of our services at once, from one client and then from 20 (5 each): every caller
    gets a reply, the answer or "busy", and every "busy" is counted (shed/*)."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    from textregion_ros.srv import Ground
    h = swept[0]
    # A caller that fires a burst needs a response queue as deep as its burst, or its own middleware drops answers.
    deep = QoSProfile(history=HistoryPolicy.KEEP_ALL, depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    services = [(Find, "find", lambda i: Find.Request(query=f"thing {i % 5}")),
                (Trigger, "memory/save", lambda i: Trigger.Request()),
                (Ground, "ground", lambda i: Ground.Request(query=f"thing {i % 5}")),
                (Trigger, "memory/clear", lambda i: Trigger.Request())]
    for kind, name, request in services:
        for clients in (1, 20):
            made = [h.tester.create_client(kind, name, qos_profile=deep) for _ in range(clients)]
            assert all(c.wait_for_service(10) for c in made)
            before = sum(v for k, v in h.node.stats.snapshot().items() if k.startswith("shed/"))
            futures = [made[i % clients].call_async(request(i)) for i in range(100)]
            assert h.wait(lambda: all(f.done() for f in futures), 180), (name, clients, sum(f.done() for f in futures))
            replies = [f.result() for f in futures]
            busy = sum(not r.success and r.message.startswith("busy") for r in replies)
            assert all(r.success or r.message.startswith("busy") or (name == "ground" and "frame" in r.message)
                       for r in replies), (name, {r.message for r in replies if not r.success})
            shed = sum(v for k, v in h.node.stats.snapshot().items() if k.startswith("shed/")) - before
            assert shed == busy, (name, clients, shed, busy)
            for c in made:
                h.tester.destroy_client(c)
    assert h.node.parts.alive()
