"""Transforms from /tf and /tf_static: tf2_ros when a ROS install has it, else a small buffer of our own.

tf2_ros is not on PyPI (the wheels this project tests with lack it). Its messages are plain
``tf2_msgs/TFMessage``, so where it is missing ``TfBuffer`` subscribes to both topics itself and
answers the one question the node asks: the transform between two frames at an image's stamp.
It follows tf2's rules: frames form a tree, dynamic transforms are interpolated between the two
samples around the stamp (never extrapolated past them), static ones hold at every time, and a
stamp of 0 means the latest. Transforms with NaN, inf or a zero quaternion are refused and counted, and so
are two kinds that would otherwise poison the buffer for good: a stamp more than ``MAX_SKEW_S`` from the
node's clock (one far-future sample would push every later one out of the cache), and a transform that would
make the frames a loop.
"""
from __future__ import annotations

import bisect
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from scipy.spatial.transform import Rotation, Slerp
from tf2_msgs.msg import TFMessage

from ..geometry.transform import RigidTransform
from .convert import ImageError, stamp_ns

try:  # a real ROS install
    import tf2_ros
except ImportError:  # the PyPI wheels
    tf2_ros = None

CACHE_S = 10.0  # seconds of dynamic transforms kept per frame (tf2's default)
MAX_DEPTH = 64  # frames between a frame and its root; deeper means a loop in bad input
MAX_SKEW_S = 60.0  # a dynamic transform stamped further than this from the node's clock is refused


class TransformUnavailable(LookupError):
    """No transform between the frames at that stamp (unknown frame, not connected, or out of the cache)."""


def transform_from_msg(ts) -> RigidTransform:
    """geometry_msgs/TransformStamped -> RigidTransform (points in child frame -> header frame)."""
    r, t = ts.transform.rotation, ts.transform.translation
    return RigidTransform.from_quaternion([r.x, r.y, r.z, r.w], [t.x, t.y, t.z])


class _Samples:
    """One child frame's dynamic samples, in stamp order."""

    def __init__(self) -> None:
        self.stamps: List[int] = []
        self.items: List[Tuple[str, RigidTransform]] = []

    def add(self, t_ns: int, parent: str, T: RigidTransform) -> None:
        i = bisect.bisect_left(self.stamps, t_ns)
        if i < len(self.stamps) and self.stamps[i] == t_ns:
            self.items[i] = (parent, T)  # a resend of the same stamp replaces it
        else:
            self.stamps.insert(i, t_ns)
            self.items.insert(i, (parent, T))
        cut = bisect.bisect_left(self.stamps, self.stamps[-1] - int(CACHE_S * 1e9))
        del self.stamps[:cut], self.items[:cut]

    def at(self, t_ns: int) -> Tuple[str, RigidTransform]:
        if t_ns == 0:
            return self.items[-1]
        i = bisect.bisect_left(self.stamps, t_ns)
        if i < len(self.stamps) and self.stamps[i] == t_ns:
            return self.items[i]
        if i == 0 or i == len(self.stamps):
            span = f"{self.stamps[0] * 1e-9:.3f} .. {self.stamps[-1] * 1e-9:.3f} s"
            raise TransformUnavailable(f"stamp {t_ns * 1e-9:.3f} s is outside the buffered {span} (no extrapolation)")
        (p0, a), (p1, b) = self.items[i - 1], self.items[i]
        if p0 != p1:
            raise TransformUnavailable("the frame's parent changed between the samples around the stamp")
        w = (t_ns - self.stamps[i - 1]) / (self.stamps[i] - self.stamps[i - 1])
        rot = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([a.R, b.R])))([w]).as_matrix()[0]
        return p0, RigidTransform(rot, (1 - w) * a.t + w * b.t)


class TfBuffer:
    """tf2's lookup from /tf and /tf_static, for a node without tf2_ros (and for tests)."""

    def __init__(self, node, on_bad=None, now_ns=None):
        self._now_ns = now_ns or ((lambda: node.get_clock().now().nanoseconds) if node is not None else None)
        self._cv = threading.Condition()
        self._dynamic: Dict[str, _Samples] = {}
        self._static: Dict[str, Tuple[str, RigidTransform]] = {}
        self._on_bad = on_bad  # (reason, text) -> None: a refused transform is the input's fault
        self._subs = []
        if node is None:  # fed by add() alone (unit tests)
            return
        dynamic = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        static = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._subs = [node.create_subscription(TFMessage, "/tf", lambda m: self.add(m, False), dynamic),
                      node.create_subscription(TFMessage, "/tf_static", lambda m: self.add(m, True), static)]

    def add(self, msg, static: bool) -> None:
        for ts in msg.transforms:
            parent, child = ts.header.frame_id.strip("/"), ts.child_frame_id.strip("/")
            try:
                T = transform_from_msg(ts)
                t_ns = stamp_ns(ts.header.stamp)
                if not parent or not child or parent == child:
                    raise ValueError(f"frames {parent!r} -> {child!r}")
                if not static:
                    self._check_stamp(t_ns)
            except (ValueError, ImageError) as exc:
                self._refuse(parent, child, str(exc))
                continue
            with self._cv:
                if self._above(parent, child):
                    self._refuse(parent, child, f"{child!r} is already above {parent!r}: the frames would form a loop")
                    continue
                if static:
                    self._static[child] = (parent, T)
                else:
                    self._dynamic.setdefault(child, _Samples()).add(t_ns, parent, T)
                self._cv.notify_all()

    def _refuse(self, parent: str, child: str, why: str) -> None:
        if self._on_bad is not None:
            self._on_bad("transform", f"refused a transform {parent!r} -> {child!r}: {why}")

    def _check_stamp(self, t_ns: int) -> None:
        now = self._now_ns() if self._now_ns is not None else 0
        if now > 0 and abs(t_ns - now) > MAX_SKEW_S * 1e9:  # a clock of 0: sim time before /clock, not checked
            raise ValueError(f"stamp {t_ns * 1e-9:.3f} s is {abs(t_ns - now) * 1e-9:.0f} s from the node's clock "
                             f"(more than {MAX_SKEW_S:.0f} s)")

    def _above(self, frame: str, child: str) -> bool:
        """Is ``child`` ``frame`` or one of its ancestors (by the latest samples)? Then child -> frame is a loop."""
        for _ in range(MAX_DEPTH):
            if frame == child:
                return True
            step = self._step(frame, 0)  # stamp 0: the latest
            if step is None:
                return False
            frame = step[0]
        return True

    def _step(self, frame: str, t_ns: int) -> Optional[Tuple[str, RigidTransform]]:
        """(parent, frame -> parent) at the stamp; None for a root (a frame that is nobody's child)."""
        if frame in self._static:
            return self._static[frame]
        samples = self._dynamic.get(frame)
        return samples.at(t_ns) if samples is not None else None

    def _ancestors(self, frame: str, t_ns: int) -> Dict[str, RigidTransform]:
        """Every ancestor of ``frame`` (itself included) -> the transform from ``frame`` to it."""
        out, T, f = {frame: RigidTransform.identity()}, RigidTransform.identity(), frame
        for _ in range(MAX_DEPTH):
            step = self._step(f, t_ns)
            if step is None:
                return out
            f, T = step[0], T.then(step[1])
            if f in out:
                raise TransformUnavailable(f"the transforms above {frame!r} form a loop")
            out[f] = T
        raise TransformUnavailable(f"more than {MAX_DEPTH} frames above {frame!r}")

    def _lookup_now(self, target: str, source: str, t_ns: int) -> RigidTransform:
        up_source = self._ancestors(source, t_ns)
        up_target = self._ancestors(target, t_ns)
        for frame, T in up_source.items():  # nearest common ancestor first
            if frame in up_target:
                return T.then(up_target[frame].inverse())
        known = set(self._static) | set(self._dynamic) | {p for p, _ in self._static.values()}
        known |= {p for s in self._dynamic.values() for p, _ in s.items}
        missing = [f for f in (target, source) if f not in known]
        why = f"unknown frame {missing[0]!r}" if missing else "the frames are not connected"
        raise TransformUnavailable(f"no transform {source} -> {target}: {why}")

    def lookup(self, target: str, source: str, t_ns: int, timeout_s: float) -> RigidTransform:
        """Points in ``source`` -> ``target`` at ``t_ns`` (0 = latest), waiting up to ``timeout_s``."""
        target, source = target.strip("/"), source.strip("/")
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while True:
                try:
                    return self._lookup_now(target, source, t_ns)
                except TransformUnavailable:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise
                    self._cv.wait(left)


class Tf2Lookup:
    """The same question, asked of tf2_ros where a ROS install has it."""

    def __init__(self, node, module=None):
        module = module or tf2_ros
        self.buffer = module.Buffer()
        self.listener = module.TransformListener(self.buffer, node)

    def lookup(self, target: str, source: str, t_ns: int, timeout_s: float) -> RigidTransform:
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            ts = self.buffer.lookup_transform(target, source, Time(nanoseconds=t_ns),
                                              timeout=Duration(seconds=timeout_s))
            return transform_from_msg(ts)
        except Exception as exc:  # tf2's lookup, connectivity and extrapolation errors, a non-finite transform
            raise TransformUnavailable(f"{type(exc).__name__}: {exc}") from exc


def make_lookup(node, on_bad=None):
    """tf2_ros when importable (preferred), else our own buffer."""
    return Tf2Lookup(node) if tf2_ros is not None else TfBuffer(node, on_bad)
