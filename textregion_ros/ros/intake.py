"""The camera's inputs: image, depth and camera_info callbacks. Checks, counts, hand-over; no model work.

An image that passes its header checks goes into the frame slot (newest wins); depth frames wait
in a short buffer and are matched to the image by stamp when the inference stage takes it.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Optional, Tuple

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from .context import NodeContext
from .convert import ImageError, check_frame_header, stamp_ns
from .handover import LatestSlot

DEPTH_BUFFER = 30  # depth frames kept for matching: a second of a 30 Hz camera


@dataclass
class Frame:
    """What the inference stage takes: the image, its depth matched at hand-over."""
    msg: Any
    seq: int  # this frame's receipt number
    newest: int  # the newest receipt number when the frame was taken (equal: it was the newest)
    depth: Optional[Image]
    K: Optional[np.ndarray]


def valid_K(msg: CameraInfo) -> Optional[np.ndarray]:
    K = np.array(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        return None
    return K


class Intake:
    def __init__(self, ctx: NodeContext):
        self.ctx = ctx
        self.slot: LatestSlot[Any] = LatestSlot()
        self._depth: Deque[Tuple[int, Image]] = deque(maxlen=DEPTH_BUFFER)
        self._depth_lock = threading.Lock()
        self.K: Optional[np.ndarray] = None
        self._warned_qos = False

    # --- callbacks (executor threads) ---
    def on_image(self, msg) -> None:
        ctx = self.ctx
        ctx.stats.on_received()
        try:
            t_ns = stamp_ns(msg.header.stamp)
            check_frame_header(msg)
        except ImageError as exc:
            ctx.bad_input(exc.reason, str(exc))
            return
        max_future = ctx.settings.max_future
        ahead = t_ns - ctx.now_ns()
        if max_future > 0 and ahead > max_future * 1e9:
            ctx.bad_input("future_stamp", f"stamped {ahead * 1e-9:.1f} s ahead of this node's clock "
                                          f"(max_future {max_future} s)")
            return
        if self.slot.put(msg):
            ctx.stats.count("dropped_stale")

    def on_depth(self, msg: Image) -> None:
        try:
            t = stamp_ns(msg.header.stamp)
        except ImageError as exc:
            self.ctx.bad_input(f"depth_{exc.reason}", str(exc), "depth")
            return
        with self._depth_lock:
            self._depth.append((t, msg))

    def on_camera_info(self, msg: CameraInfo) -> None:
        K = valid_K(msg)
        if K is None:
            self.ctx.bad_input("camera_info", f"K must be finite with fx, fy > 0, got {list(msg.k)}", "camera_info")
            return
        self.K = K

    def on_incompatible_qos(self, event) -> None:
        self.ctx.stats.count("qos/incompatible")
        if not self._warned_qos:
            self._warned_qos = True
            self.ctx.logger.warning(
                f"a publisher's QoS is incompatible with this subscription (policy {event.last_policy_kind}); "
                f"camera inputs use image_qos={self.ctx.settings.image_qos!r}: set image_qos:=reliable or make the "
                f"publisher best-effort")

    # --- the inference stage's side ---
    def take(self, timeout: float = 0.1) -> Optional[Frame]:
        """The newest frame with its depth, or None (closed or nothing within ``timeout``)."""
        msg = self.slot.take(timeout)
        if msg is None:
            return None
        depth, K = self.match_depth(msg.header)
        return Frame(msg, *self.slot.last_taken, depth, K)

    def has_depth(self, t_ns: int) -> bool:
        """A depth frame stamped exactly ``t_ns`` is buffered (tests wait on it before sending the image)."""
        with self._depth_lock:
            return any(t == t_ns for t, _ in self._depth)

    def match_depth(self, header) -> Tuple[Optional[Image], Optional[np.ndarray]]:
        """The buffered depth frame nearest the image's stamp, kept with the frame."""
        with self._depth_lock:
            buffered = list(self._depth)
        if not buffered:
            return None, None
        t = stamp_ns(header.stamp)
        stamp, depth_msg = min(buffered, key=lambda d: abs(d[0] - t))
        if abs(stamp - t) > self.ctx.settings.sync_tolerance * 1e9:
            self.ctx.warn("depth/unmatched_stamp", "no depth within sync_tolerance of the image; 3D values are NaN")
            return None, None
        if self.K is None:
            self.ctx.warn("depth/no_camera_info", "depth without camera_info; 3D values are NaN")
            return None, None
        return depth_msg, self.K

    def reset(self) -> None:
        """Deactivation: nothing from before it is processed after."""
        self.slot.clear()
        with self._depth_lock:
            self._depth.clear()
