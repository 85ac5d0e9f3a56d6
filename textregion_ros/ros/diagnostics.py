"""Counters and rates for /diagnostics (diagnostic_msgs).

Counts are cumulative (``bad_input/<reason>``, ``depth/<reason>``, ``errors/<where>``, drops).
The status level looks at a recent window only: one bad frame an hour ago is no reason to stay
at WARN, while bad input now is.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Deque, Dict, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

PROBLEM_PREFIXES = ("bad_input/", "errors/", "depth/", "qos/", "tf/", "memory/no_")
NO_INPUT_WARN_S = 5.0  # an active node that has received no image for this long says so


class Stats:
    def __init__(self, window_s: float = 5.0, level_window_s: float = 10.0):
        self.window_s = window_s
        self.level_window_s = level_window_s
        self.lock = threading.Lock()
        self.received: Deque[float] = deque()
        self.processed: Deque[float] = deque()
        self.published: Dict[str, Deque[float]] = {}
        self.latency: Deque[float] = deque(maxlen=100)
        self.compute: Deque[float] = deque(maxlen=100)
        self.pipeline: Deque[float] = deque(maxlen=100)
        self.publish: Deque[float] = deque(maxlen=100)
        self.publish_cpu: Deque[float] = deque(maxlen=100)  # the stage thread's CPU time: work, not GIL waits
        self.publish_parts: Dict[str, Deque[float]] = {}
        self.memory_fuse: Deque[float] = deque(maxlen=100)  # the memory stage's fusion time per frame
        self.memory_fuse_cpu: Deque[float] = deque(maxlen=100)  # its thread's CPU time: work, not waits for a core
        self.memory_stage: Deque[float] = deque(maxlen=100)  # its whole time per frame: TF, points, fusion, outputs
        self.recent_problems: Deque[Tuple[float, str]] = deque(maxlen=1000)
        self.counts: Counter = Counter()
        self.flags: Dict[str, str] = {}
        self.last_received = time.monotonic()  # of the last image (from when the node was activated)
        self.cameras: list = []  # with named cameras, the node's entry: the rates are the sum of theirs

    def _trim(self, q: Deque[float], now: float) -> None:
        while q and now - q[0] > self.window_s:
            q.popleft()

    def on_received(self) -> None:
        with self.lock:
            self.last_received = time.monotonic()
            self.received.append(self.last_received)
            self.counts["received"] += 1

    def on_processed(self, compute_s: float, pipeline_s: float) -> None:
        """compute: conversion + pipeline (the inference stage)."""
        with self.lock:
            self.processed.append(time.monotonic())
            self.compute.append(compute_s)
            self.pipeline.append(pipeline_s)
            self.counts["processed"] += 1
            # Cumulative, so a reader can take the mean over any window of its own (a benchmark's).
            self.counts["pipeline_total_s"] += pipeline_s

    def on_published(self, latency_s: float, publish_s: float, outputs, parts: Dict[str, float] = None,
                     cpu_s: float = float("nan")) -> None:
        """latency: image stamp to published; publish: the publish stage's own time, split in ``parts``;
        cpu: that stage's thread CPU time (wall minus cpu is time spent waiting for the GIL or a core)."""
        now = time.monotonic()
        with self.lock:
            self.latency.append(latency_s)
            self.publish.append(publish_s)
            self.publish_cpu.append(cpu_s)
            for name, value in (parts or {}).items():
                self.publish_parts.setdefault(name, deque(maxlen=100)).append(value)
            for name in outputs:
                self.published.setdefault(name, deque()).append(now)

    def on_memory(self, fuse_s: float, stage_s: float, fuse_cpu_s: float = float("nan")) -> None:
        with self.lock:
            self.memory_fuse.append(fuse_s)
            self.memory_fuse_cpu.append(fuse_cpu_s)
            self.memory_stage.append(stage_s)

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n
            if key.startswith(PROBLEM_PREFIXES):
                self.recent_problems.append((time.monotonic(), key))

    def set_flag(self, key: str, value: str) -> None:
        with self.lock:
            self.flags[key] = value

    def snapshot(self) -> Dict[str, float]:
        summed = [c.snapshot() for c in self.cameras]  # each camera's own lock, before this one's
        now = time.monotonic()
        mean = lambda q: sum(q) / len(q) if q else float("nan")  # noqa: E731
        with self.lock:
            self._trim(self.received, now)
            self._trim(self.processed, now)
            lat = sorted(self.latency)
            out: Dict[str, float] = dict(self.counts)
            out["input_rate_hz"] = len(self.received) / self.window_s
            out["processed_rate_hz"] = len(self.processed) / self.window_s
            for key in ("input_rate_hz", "processed_rate_hz") if summed else ():
                out[key] = sum(c[key] for c in summed)
            for name, q in self.published.items():
                self._trim(q, now)
                out[f"published_rate_hz/{name}"] = len(q) / self.window_s
            out["latency_mean_s"] = mean(lat)
            out["latency_p95_s"] = lat[int(0.95 * (len(lat) - 1))] if lat else float("nan")
            out["latency_max_s"] = lat[-1] if lat else float("nan")
            out["compute_mean_s"] = mean(self.compute)
            out["pipeline_mean_s"] = mean(self.pipeline)
            out["ros_overhead_mean_s"] = out["compute_mean_s"] - out["pipeline_mean_s"]
            out["publish_mean_s"] = mean(self.publish)
            out["publish_cpu_mean_s"] = mean(self.publish_cpu)
            for name, q in self.publish_parts.items():
                out[f"publish_mean_s/{name}"] = mean(q)
            if self.memory_fuse:
                out["memory_fuse_mean_s"] = mean(self.memory_fuse)
                out["memory_fuse_cpu_mean_s"] = mean(self.memory_fuse_cpu)
                out["memory_stage_mean_s"] = mean(self.memory_stage)
            recent = Counter(k for t, k in self.recent_problems if now - t <= self.level_window_s)
        out["recent_problems"] = sum(recent.values())
        out["_recent"] = recent
        return out

    def _state(self, snap, flags) -> Tuple[str, bool]:
        """What the node is doing in words, and whether that alone is worth a WARN."""
        if flags.get("lifecycle_state", "active") != "active":
            return f"{flags['lifecycle_state']}: not processing", False
        if flags.get("qos_incompatible") == "true":
            return f"a camera publisher's QoS is incompatible: {flags.get('qos_hint', '')}", True
        silent = time.monotonic() - self.last_received
        if silent > NO_INPUT_WARN_S and "lifecycle_state" in flags:
            return f"no image on {flags.get('input_topic', 'the image topic')} for {silent:.0f} s", True
        if flags.get("idle") == "true":
            return "idle: no output has a subscriber", False
        return f"{snap['processed_rate_hz']:.1f} Hz processed of {snap['input_rate_hz']:.1f} Hz in", False

    def message(self, stamp, name: str, hardware_id: str) -> DiagnosticArray:
        snap = self.snapshot()
        recent: Counter = snap.pop("_recent")
        status = DiagnosticStatus()
        status.name, status.hardware_id = name, hardware_id
        bad = sum(v for k, v in snap.items() if k.startswith("bad_input/"))
        with self.lock:
            flags = dict(self.flags)
        state, warn = self._state(snap, flags)
        status.level = DiagnosticStatus.WARN if recent or warn else DiagnosticStatus.OK
        recent_txt = (", last %.0f s: " % self.level_window_s + ", ".join(f"{k} x{v}" for k, v in recent.most_common(3))
                      if recent else "")
        status.message = f"{state}, {int(bad)} bad inputs{recent_txt}"
        values = [KeyValue(key=k, value=f"{v:.7g}" if isinstance(v, float) else str(v)) for k, v in sorted(snap.items())]
        values += [KeyValue(key=k, value=v) for k, v in sorted(flags.items())]
        status.values = values
        arr = DiagnosticArray()
        arr.header.stamp = stamp
        arr.status = [status]
        return arr


def status_message(entries, pipeline, state: str, stamp, node_name: str) -> DiagnosticArray:
    """The node's /diagnostics entries: its counters, its lifecycle state and, on CUDA, the memory peak; with
    named cameras, one more entry per camera (``entries``: [(Stats, camera name)], the node's first, "")."""
    node_stats = entries[0][0]
    if pipeline is not None and pipeline.device.type == "cuda":  # the caching allocator's peak
        import torch

        node_stats.set_flag("device_memory_peak_mb", f"{torch.cuda.max_memory_reserved(pipeline.device) / 2**20:.0f}")
    hardware = str(pipeline.device) if pipeline is not None else state
    for model, backend in getattr(pipeline, "backends", {}).items():  # torch or onnxruntime, as configured
        node_stats.set_flag(f"{model}_backend", backend)
    out = None
    for st, camera in entries:
        st.set_flag("lifecycle_state", state)
        arr = st.message(stamp, f"{node_name}: {camera or 'inference'}", hardware)
        if out is None:
            out = arr
        else:
            out.status.extend(arr.status)
    return out


def node_status(node_stats: Stats, cameras, pipeline, state: str, stamp, node_name: str) -> DiagnosticArray:
    """The node's entry and, with named cameras, one per camera. The node's own entry (models, text, services)
    is silent only when every camera is."""
    named = [c for c in cameras if c.name]
    node_stats.cameras = [c.ctx.stats for c in named]  # the inference entry's rates: every camera's frames
    if named:
        node_stats.last_received = max(c.ctx.stats.last_received for c in named)
        node_stats.set_flag("input_topic", "any camera")
    entries = [(node_stats, "")] + [(c.ctx.stats, c.name) for c in named]
    return status_message(entries, pipeline, state, stamp, node_name)
