"""The memory node's fusion on the proxy's own frames, standalone: bench_memory's twin of the in-node figure.

bench_memory's own scene (a grid of boxes, 64 detections of distinct objects) is another workload than the
proxy's (64 touching regions of one tabletop, random-weight tokens that all look alike). To compare the fusion
time in textregion_memory with a standalone figure on the same work, ``bench_node --proxy-gpu --memory-node``
records the ``observation`` messages of its measuring window as the node received them (serialized CDR bytes,
a raw subscription beside the memory node's), and ``replay`` fuses them again in this process, with no ROS
executor, no DDS and no other thread: the same MemoryStage.fuse (memory_stage.py) on the same memory file
content, the camera's pose the bench camera's (identity in ``map``), every recorded frame in order.

    python bench/bench_memory.py --replay RECORDING.pkl
"""
from __future__ import annotations

import logging
import os
import pickle
import statistics
import tempfile
import time
from typing import List

import numpy as np

TYPE = "textregion_ros/msg/Observation"
MAX_RECORDED = 400  # about 13 s of a 30 fps camera: enough frames for a median and p95


class Recorder:
    """The observation topic's messages as bytes (a raw subscription: nothing is deserialized here)."""

    def __init__(self, node, topic: str = "observation"):
        import textregion_ros.msg as trmsg

        self.messages: List[bytes] = []
        self.on = False
        self.sub = node.create_subscription(trmsg.Observation, topic, self._got, 50, raw=True)

    def _got(self, data: bytes) -> None:
        if self.on and len(self.messages) < MAX_RECORDED:
            self.messages.append(bytes(data))

    def save(self, path: str, memory_objects: int) -> str:
        with open(path, "wb") as fh:
            pickle.dump({"type": TYPE, "memory_objects": memory_objects, "messages": self.messages}, fh)
        return path


class _Identity:
    """The bench camera's transform (bench_node.CAMERA publishes the identity from map to its optical frame)."""

    def lookup(self, target, source, stamp_ns, timeout):
        from textregion_ros.geometry.transform import RigidTransform

        return RigidTransform.identity()


def stage_for(memory_objects: int, token_dim: int, encoder: str):
    """A MemoryStage as textregion_memory configures it under config/perceive.yaml (memory on, its defaults),
    holding what bench_node's memory file holds (bench_memory.save_filled). Nothing subscribes to
    its outputs here; in the node the bench subscribes to them, so the node's stage figure includes building them."""
    import bench_memory
    from textregion_ros.ros.context import NodeContext
    from textregion_ros.ros.diagnostics import Stats
    from textregion_ros.ros.memory_stage import MemoryStage
    from textregion_ros.ros.settings import NodeSettings

    header = {"encoder": encoder, "token_dim": token_dim, "frame": "map"}
    path = bench_memory.save_filled(os.path.join(tempfile.mkdtemp(prefix="replay_"), "memory.npz"), memory_objects,
                                    token_dim, header)
    settings = NodeSettings(memory=True, memory_file=path, memory_save_every=0.0)
    ctx = NodeContext(logging.getLogger("replay"), Stats(), time.monotonic_ns, settings)
    stage = MemoryStage(ctx, {}, _Identity(), header)
    stage.load()  # as the node loads its memory_file on configure
    return stage


def replay(path: str) -> dict:
    """Fuse the recording's frames in order; ObjectMemory.integrate's time per frame (what the node's
    memory_fuse_mean_s times) and the whole fuse (detections built, the poses applied)."""
    from rclpy.serialization import deserialize_message

    import textregion_ros.msg as trmsg
    from textregion_ros.ros.observation import memory_frame

    with open(path, "rb") as fh:
        rec = pickle.load(fh)
    msgs = [deserialize_message(b, trmsg.Observation) for b in rec["messages"]]
    if not msgs:
        return {"error": f"{path} holds no observation"}
    first = msgs[0]
    stage = stage_for(rec["memory_objects"], first.token_dim, first.encoder)
    whole, ms, cpu = [], [], []
    for m in msgs:
        frame = memory_frame(m, first.encoder, first.token_dim)
        t0 = time.perf_counter()
        stage.fuse(frame)
        whole.append(time.perf_counter() - t0)
        ms.append(1e3 * stage.ctx.stats.memory_fuse[-1])
        cpu.append(1e3 * getattr(stage.ctx.stats, "memory_fuse_cpu", [float("nan")])[-1])  # older trees: none
    ms.sort()
    return {"recording": path, "frames": len(msgs),
            "regions_per_frame": round(float(np.mean([len(m.regions) for m in msgs])), 1),
            "objects_preloaded": rec["memory_objects"], "objects_end": len(stage.memory),
            "fuse_mean_ms": round(statistics.fmean(ms), 2), "fuse_median_ms": round(statistics.median(ms), 2),
            "fuse_p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2), "fuse_cpu_mean_ms": round(statistics.fmean(cpu), 2),
            "whole_fuse_mean_ms": round(1e3 * statistics.fmean(whole), 2)}
