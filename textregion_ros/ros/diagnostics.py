"""Counters and rates for /diagnostics (diagnostic_msgs), and throttled bad-input accounting."""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Deque, Dict

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


class Stats:
    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self.lock = threading.Lock()
        self.received: Deque[float] = deque()
        self.processed: Deque[float] = deque()
        self.latency: Deque[float] = deque(maxlen=100)
        self.compute: Deque[float] = deque(maxlen=100)
        self.pipeline: Deque[float] = deque(maxlen=100)
        self.counts: Counter = Counter()  # dropped_stale, dropped_old, bad_input/<reason>, depth/<reason>, ...

    def _trim(self, q: Deque[float], now: float) -> None:
        while q and now - q[0] > self.window_s:
            q.popleft()

    def on_received(self) -> None:
        with self.lock:
            self.received.append(time.monotonic())
            self.counts["received"] += 1

    def on_processed(self, latency_s: float, compute_s: float, pipeline_s: float) -> None:
        """latency: image stamp to published; compute: conversion + pipeline + publishing."""
        with self.lock:
            self.processed.append(time.monotonic())
            self.latency.append(latency_s)
            self.compute.append(compute_s)
            self.pipeline.append(pipeline_s)
            self.counts["processed"] += 1

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def snapshot(self) -> Dict[str, float]:
        now = time.monotonic()
        with self.lock:
            self._trim(self.received, now)
            self._trim(self.processed, now)
            lat = sorted(self.latency)
            out: Dict[str, float] = dict(self.counts)
            out["input_rate_hz"] = len(self.received) / self.window_s
            out["processed_rate_hz"] = len(self.processed) / self.window_s
            out["latency_mean_s"] = sum(lat) / len(lat) if lat else float("nan")
            out["latency_max_s"] = lat[-1] if lat else float("nan")
            out["compute_mean_s"] = sum(self.compute) / len(self.compute) if self.compute else float("nan")
            out["pipeline_mean_s"] = sum(self.pipeline) / len(self.pipeline) if self.pipeline else float("nan")
            out["ros_overhead_mean_s"] = out["compute_mean_s"] - out["pipeline_mean_s"]
        return out

    def message(self, stamp, name: str, hardware_id: str) -> DiagnosticArray:
        snap = self.snapshot()
        status = DiagnosticStatus()
        status.name, status.hardware_id = name, hardware_id
        bad = sum(v for k, v in snap.items() if k.startswith("bad_input/"))
        status.level = DiagnosticStatus.WARN if bad or snap.get("errors/inference", 0) else DiagnosticStatus.OK
        status.message = (f"{snap['processed_rate_hz']:.1f} Hz processed of {snap['input_rate_hz']:.1f} Hz in, "
                          f"{int(bad)} bad inputs")
        status.values = [KeyValue(key=k, value=f"{v:.4g}" if isinstance(v, float) else str(v))
                         for k, v in sorted(snap.items())]
        arr = DiagnosticArray()
        arr.header.stamp = stamp
        arr.status = [status]
        return arr
