"""The object memory in its own node and process (textregion_memory) over DDS.

Two perception nodes in two namespaces, each with its own camera frame, sweep the ray-cast room (half the
circle each) and publish ``observation``; one memory node fuses both into one map. Their given masks have
SAM2's faults (FaultyColourMasks: merged, split and spurious masks). Checked against where the room's
objects really are.
Then a memory node process is killed with SIGKILL (a crash, no save) beside a running perception node, which
keeps publishing; the restarted process loads the file the crash left untouched.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

import textregion_ros.msg as trmsg
from memory_scene import FaultyColourMasks, circle, look_at, render, room_encoder
from ros_harness import ROOT, TEST_OVERRIDES, YAML, Harness
from test_node_memory import THINGS, Room, centroid, room_pipeline
from textregion_ros.pipeline import Pipeline
from textregion_ros.ros.memory_node import MemoryNode
from textregion_ros.srv import Find

SOURCES = ("/r1", "/r2")


def perception_params():
    return [Parameter("vocabulary", value=[t.name for t in THINGS]), Parameter("background", value=["floor"]),
            Parameter("tracking", value=False)]


def memory_node(path, pipeline):
    node = MemoryNode(scores=pipeline, namespace="/mem", cli_args=["--ros-args", "--params-file", YAML],
                      parameter_overrides=TEST_OVERRIDES + [
                          Parameter("memory_frame", value="map"), Parameter("memory_file", value=str(path)),
                          Parameter("memory_save_every", value=0.0), Parameter("memory_publish_every", value=0.0),
                          Parameter("memory_sources", value=[f"{ns}/observation" for ns in SOURCES]),
                          Parameter("background", value=["floor"]), Parameter("tf_timeout", value=1.0)])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, node.last_failure
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    return node


def call(node, kind, name, request, wait):
    client = node.create_client(kind, name)
    assert client.wait_for_service(10)
    future = client.call_async(request)
    assert wait(future.done, 60)
    node.destroy_client(client)
    return future.result()


def view(h, tf, pose, frame_id, mem):
    """The camera's pose on /tf at the frame's stamp, then the frame; returns once the memory fused it."""
    h.wait_idle()
    fused = mem.stats.snapshot().get("memory/fused", 0)
    r = render(THINGS, pose)
    stamp = h.now()
    msg = Room.pose_msg(None, pose, stamp)
    msg.transforms[0].child_frame_id = frame_id
    tf.publish(msg)
    h.send(r.rgb, np.nan_to_num(r.depth_m, nan=0.0), r.K, stamp=stamp, frame_id=frame_id)
    assert h.wait(lambda: mem.stats.snapshot().get("memory/fused", 0) > fused, 30), mem.stats.snapshot()


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    rclpy.init()
    path = tmp_path_factory.mktemp("memory_node") / "room.npz"
    masks = FaultyColourMasks(THINGS, seed=11)
    pipeline = Pipeline(room_pipeline().config, encoder=room_encoder(THINGS), mask_source=masks)
    nodes = [Harness(namespace=ns, pipeline=pipeline, extra=perception_params()) for ns in SOURCES]
    mem = memory_node(path, pipeline)
    nodes[0].executor.add_node(mem)
    h = nodes[0]
    objects, observed = [], {ns: 0 for ns in SOURCES}
    h.tester.create_subscription(trmsg.MemoryObjectArray, "/mem/memory/objects", objects.append, 10)
    for ns in SOURCES:
        h.tester.create_subscription(trmsg.Observation, f"{ns}/observation",
                                     lambda m, ns=ns: observed.__setitem__(ns, observed[ns] + 1), 10)
    tf = h.tester.create_publisher(TFMessage, "/tf", 100)
    assert h.wait(lambda: tf.get_subscription_count() > 0, 10)
    for i, pose in enumerate(circle(44)):  # r1 sees one half of the circle, r2 the other
        k = int(i >= 22)
        view(nodes[k], tf, pose, f"r{k + 1}_camera", mem)
    for y in (-1.0, 1.0):  # then r1 looks away: nothing of the room is in view
        view(h, tf, look_at((1.6, 0.0, 0.9), (4.0, y, 0.0)), "r1_camera", mem)
    assert {"merged", "split", "blob"} <= set(masks.faults), masks.faults
    try:
        yield nodes, mem, path, objects, observed
    finally:
        nodes[0].executor.remove_node(mem)
        mem.destroy_node()
        for n in nodes:
            n.close()
        rclpy.shutdown()


def test_two_perception_nodes_feed_one_map_with_each_object_once_within_two_centimetres(fed):
    nodes, mem, _, objects, observed = fed
    assert all(n >= 20 for n in observed.values()), observed  # both fed it, over DDS
    assert nodes[0].wait(lambda: objects, 10)
    objs = objects[-1].objects
    assert objects[-1].header.frame_id == "map"
    assert sorted(o.label for o in objs) == sorted(t.name for t in THINGS), [o.label for o in objs]
    for o in objs:
        truth = next(t for t in THINGS if t.name == o.label)
        assert np.linalg.norm(centroid(o) - truth.centre) <= 0.02, (o.label, centroid(o), truth.centre)
        assert o.times_seen >= 10
    assert {o.camera for o in objs} <= {"r1_camera", "r2_camera"}
    snap = mem.stats.snapshot()
    assert snap.get("memory/fused", 0) >= 46 and not any(k.startswith("errors/") for k in snap), snap
    for n in nodes:  # the perception nodes remember nothing themselves
        assert n.node.parts.memory is None


def test_find_on_the_memory_node_answers_every_class_out_of_view(fed):
    nodes, *_ = fed
    h = nodes[0]
    for t in THINGS:
        reply = call(h.tester, Find, "/mem/find", Find.Request(query=t.name), h.wait)
        assert reply.success and reply.found, (t.name, reply.message)
        assert reply.objects[0].label == t.name
        assert np.linalg.norm(centroid(reply.objects[0]) - t.centre) <= 0.02


def test_observations_it_cannot_use_are_counted_and_the_map_stays(fed):
    nodes, mem, _, objects, _ = fed
    h = nodes[0]
    pub = h.tester.create_publisher(trmsg.Observation, "/r2/observation", 10)
    assert h.wait(lambda: pub.get_subscription_count() > 0, 10)
    before, n = mem.stats.snapshot(), len(mem.memory)
    good = trmsg.Observation(encoder=mem.accepts[0], token_dim=mem.accepts[1], height=480, width=640, depth_step=4,
                             k=[600.0, 0, 320, 0, 600, 240, 0, 0, 1])
    good.header.stamp = h.now()
    good.depth.height, good.depth.width, good.depth.encoding, good.depth.step = 120, 160, "32FC1", 640
    good.depth.data = bytes(120 * 640)
    bad = [trmsg.Observation(encoder="ViT-L-14|openai", token_dim=768),  # another encoder's tokens
           trmsg.Observation(encoder=good.encoder, token_dim=good.token_dim, height=480, width=640, depth_step=4,
                             k=[float("nan")] * 9),  # a K that cannot project
           good]  # a depth image that does not match its size claim: none here
    bad[2].depth.height = 7
    nan = trmsg.Observation(encoder=good.encoder, token_dim=good.token_dim, height=480, width=640, depth_step=4,
                            k=list(good.k), depth=good.depth)
    nan.regions = [trmsg.ObservedRegion(token=[float("nan")] * good.token_dim, label="red mug", score=0.9)]
    bad.append(nan)  # a NaN token would poison an object's running mean
    for msg in bad:
        pub.publish(msg)
    assert h.wait(lambda: sum(v for k, v in mem.stats.snapshot().items() if k.startswith("bad_input/observation"))
                  - sum(v for k, v in before.items() if k.startswith("bad_input/observation")) >= 4, 10), \
        mem.stats.snapshot()
    assert mem.stats.snapshot().get("bad_input/observation_values", 0) > before.get("bad_input/observation_values", 0)
    assert len(mem.memory) == n and mem.stage.alive


def random_memory_file(path, n: int) -> None:
    """``n`` objects saved with the header a random-weights cpu-lite memory node expects."""
    import open_clip

    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import bench_memory
    from textregion_ros.config import preset
    from textregion_ros.memory import save_memory

    cfg = preset("cpu-lite", random_weights=True)
    dim = int(open_clip.get_model_config(cfg.encoder_model)["embed_dim"])
    memory = bench_memory.filled(n, np.random.default_rng(1), dim)
    save_memory(str(path), memory, {"encoder": f"{cfg.encoder_model}|{cfg.encoder_weights}|random",
                                    "token_dim": dim, "frame": "map"})


def start_memory_process(path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "textregion_ros.ros.memory_node", "--ros-args", "-r", "__ns:=/crashing",
           "--params-file", YAML, "-p", "preset:=cpu-lite", "-p", "random_weights:=true",
           "-p", f"memory_file:={path}", "-p", "memory_save_every:=0.0", "-p", "memory_sources:=[/r1/observation]"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def remembered(h, timeout=120.0):
    """How many objects the crashing memory node's find returns (it answers once configured)."""
    client = h.tester.create_client(Find, "/crashing/find")
    try:
        assert client.wait_for_service(timeout), "the memory node process never served find"
        for _ in range(6):  # a request sent before the reply's route is discovered is never answered: again
            future = client.call_async(Find.Request(query="anything", max_results=100))
            if h.wait(future.done, 5):
                return len(future.result().objects)
        raise AssertionError("find on the memory node process was never answered")
    finally:
        h.tester.destroy_client(client)


def test_a_killed_memory_process_leaves_perception_running_and_a_restart_reloads_its_file(fed, tmp_path):
    nodes, *_ = fed
    h = nodes[0]
    path = tmp_path / "crash.npz"
    random_memory_file(path, 12)
    saved = path.read_bytes()
    proc = start_memory_process(path)
    try:
        assert remembered(h) == 12
        assert h.wait(lambda: h.node.count_subscribers("/r1/observation") >= 2, 10)  # it reads r1 too
        proc.send_signal(signal.SIGKILL)  # a crash: no teardown, no save
        proc.wait(10)
        r = render(THINGS, circle(8)[3])
        header = h.send(r.rgb, np.nan_to_num(r.depth_m, nan=0.0), r.K, frame_id="r1_camera")
        assert h.output("regions", header) is not None, "perception stopped with the memory node"
        assert not any(k.startswith("errors/") for k in h.node.stats.snapshot())
        assert path.read_bytes() == saved  # the crash left the file whole
        proc = start_memory_process(path)
        assert remembered(h) == 12
    finally:
        proc.kill()
        proc.wait(10)


def test_save_on_the_memory_node_writes_its_file(fed):
    nodes, mem, path, *_ = fed
    h = nodes[0]
    reply = call(h.tester, Trigger, "/mem/memory/save", Trigger.Request(), h.wait)
    assert reply.success and os.path.getsize(path) > 0, reply.message
    from textregion_ros.memory import ObjectMemory
    from textregion_ros.memory.persist import load_memory

    assert load_memory(str(path), mem.stage.expected, ObjectMemory()) == len(mem.memory) == len(THINGS)
    assert time.time() - os.path.getmtime(path) < 60
