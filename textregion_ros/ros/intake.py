"""The camera's inputs: image, depth and camera_info callbacks. Checks, counts, hand-over; no model work.

An image that passes its header checks goes into the frame slot (newest wins); depth frames wait
in a short buffer and are matched to the image by stamp when the frame is published. Many drivers
publish depth just after colour, so the match waits up to sync_tolerance for a depth frame that
may still come (never when no depth has arrived at all).
"""
from __future__ import annotations

import threading
import time
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
    """What the inference stage takes."""
    msg: Any
    seq: int  # this frame's receipt number
    newest: int  # the newest receipt number when the frame was taken (equal: it was the newest)
    demanded: bool = False  # a service call asked for it (set by the inference stage)
    depths: tuple = ()  # the buffered depth frames near its stamp when it was taken (Intake.take)


def valid_K(msg: CameraInfo) -> Optional[np.ndarray]:
    K = np.array(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        return None
    return K


def image_size(msg) -> Tuple[int, int]:
    """(width, height) of a raw image, or (0, 0) when only the payload knows (compressed)."""
    return int(getattr(msg, "width", 0)), int(getattr(msg, "height", 0))


class Intake:
    def __init__(self, ctx: NodeContext, arrived: Optional[threading.Event] = None):
        self.ctx = ctx
        self.slot: LatestSlot[Any] = LatestSlot()
        self.arrived = arrived  # shared by every camera: the inference stage waits on any of them
        self._depth: Deque[Tuple[int, Image]] = deque(maxlen=DEPTH_BUFFER)
        self._depth_cv = threading.Condition()
        self.K: Optional[np.ndarray] = None
        self.K_size: Tuple[int, int] = (0, 0)  # camera_info's (width, height); (0, 0) = not given
        self._warned_qos = False
        self.latest = None  # the newest accepted image: a service call may ask for it after the stage skipped it
        self.depth_matched = False  # a depth frame matched an image since activation (before: no warning)
        self.guard = None  # the image topic's FloodGuard while subscribed (Camera.subscribe)

    # --- callbacks (executor threads) ---
    def on_image(self, msg) -> None:
        usable = self._image(msg)
        guard = self.guard
        if guard is None:
            return
        if usable:
            guard.usable()
        else:  # a topic that brings only refused frames is paused (flood_guard.py)
            guard.refused()

    def _image(self, msg) -> bool:
        """Checks and hand-over of one image: False when it was refused."""
        ctx = self.ctx
        ctx.stats.on_received()
        try:
            t_ns = stamp_ns(msg.header.stamp)
            check_frame_header(msg)
        except ImageError as exc:
            ctx.bad_input(exc.reason, str(exc))
            return False
        if not msg.header.frame_id.strip():
            ctx.bad_input("empty_frame_id", "empty header.frame_id: its outputs could not be placed (REP-103)")
            return False
        ctx.stats.set_flag("qos_incompatible", "false")  # frames arrive: whatever did not match is gone
        max_future = ctx.settings.max_future
        now = ctx.now_ns()
        ahead = t_ns - now
        if max_future > 0 and ahead > max_future * 1e9:
            hint = (" The node's clock is at 0: use_sim_time is true but nothing publishes /clock (play the bag "
                    "with --clock, or set use_sim_time:=false)." if now == 0 else "")
            ctx.bad_input("future_stamp", f"stamped {ahead * 1e-9:.1f} s ahead of this node's clock "
                                          f"(max_future {max_future} s).{hint}")
            return False
        self.latest = msg
        if self.slot.put(msg):
            ctx.stats.count("dropped_stale")
        if self.arrived is not None:
            self.arrived.set()
        return True

    def on_depth(self, msg: Image) -> None:
        try:
            t = stamp_ns(msg.header.stamp)
        except ImageError as exc:
            self.ctx.bad_input(f"depth_{exc.reason}", str(exc), "depth")
            return
        with self._depth_cv:
            self._depth.append((t, msg))
            self._depth_cv.notify_all()

    def on_camera_info(self, msg: CameraInfo) -> None:
        K = valid_K(msg)
        if K is None:
            self.ctx.bad_input("camera_info", f"K must be finite with fx, fy > 0, got {list(msg.k)}", "camera_info")
            return
        self.K, self.K_size = K, (int(msg.width), int(msg.height))

    def on_incompatible_qos(self, event) -> None:
        self.ctx.stats.count("qos/incompatible")
        self.ctx.stats.set_flag("qos_incompatible", "true")  # WARN until a frame arrives
        hint = ("set image_qos:=sensor_data (best effort accepts every publisher)"
                if self.ctx.settings.image_qos == "reliable"
                else "the publisher asks for more than best effort and volatile allow; check its durability")
        self.ctx.stats.set_flag("qos_hint", hint)
        if not self._warned_qos:
            self._warned_qos = True
            self.ctx.logger.warning(
                f"a publisher's QoS is incompatible with this subscription (policy {event.last_policy_kind}); "
                f"camera inputs use image_qos={self.ctx.settings.image_qos!r}: {hint}")

    # --- the inference stage's side ---
    def take(self, timeout: float = 0.1) -> Optional[Frame]:
        """The newest frame with its depth, or None (closed or nothing within ``timeout``)."""
        msg = self.slot.take(timeout)  # 0: only a frame already waiting
        if msg is None:
            return None
        return Frame(msg, *self.slot.last_taken, depths=self._near(msg))

    def _near(self, msg) -> tuple:
        """The buffered depth frames within sync_tolerance of the image's stamp, kept with the frame: it is
        matched when published, and a node slower than the camera (seconds a frame on a CPU) would find them
        gone from the buffer by then, a second of a 30 Hz camera."""
        t, tol = stamp_ns(msg.header.stamp), self.ctx.settings.sync_tolerance * 1e9
        with self._depth_cv:
            return tuple(d for d in self._depth if abs(d[0] - t) <= tol)

    def latest_stamp(self) -> Optional[int]:
        """The newest accepted image's stamp, or None when no image has arrived."""
        msg = self.latest
        return None if msg is None else stamp_ns(msg.header.stamp)

    def offer_latest(self) -> None:
        """A consumer asks for the newest image (the stage may have skipped it while idle): it goes back into
        the slot unless a newer one waits there."""
        msg = self.latest
        if msg is not None:
            self.slot.offer(msg)
            if self.arrived is not None:
                self.arrived.set()

    def has_depth(self, t_ns: int) -> bool:
        """A depth frame stamped exactly ``t_ns`` is buffered (tests wait on it before sending the image)."""
        with self._depth_cv:
            return any(t == t_ns for t, _ in self._depth)

    def _nearest(self, t: int, tol: float, kept: tuple = ()) -> Tuple[Optional[Image], bool]:
        """(the depth within ``tol`` of ``t`` or None, whether one may still come), from the buffer and ``kept``."""
        candidates = list(self._depth) + list(kept)
        if not candidates:
            return None, False  # this camera sends no depth: never wait for it
        stamp, msg = min(candidates, key=lambda d: abs(d[0] - t))
        if abs(stamp - t) <= tol:
            return msg, False
        return None, max(s for s, _ in candidates) < t + tol  # nothing newer yet: it may be in flight

    def match_depth(self, msg, kept: tuple = ()) -> Tuple[Optional[Image], Optional[np.ndarray]]:
        """The depth frame nearest the image's stamp (among the buffer and ``kept``, those the frame kept when
        taken) and the camera's K, waiting up to sync_tolerance for a depth frame that is late; (None, None),
        counted, when there is none or camera_info does not fit."""
        tol = self.ctx.settings.sync_tolerance
        t = stamp_ns(msg.header.stamp)
        deadline = time.monotonic() + tol
        with self._depth_cv:
            depth, may_come = self._nearest(t, tol * 1e9, kept)
            while depth is None and may_come and time.monotonic() < deadline:
                self._depth_cv.wait(max(deadline - time.monotonic(), 0.0))
                depth, may_come = self._nearest(t, tol * 1e9, kept)
            buffered = bool(self._depth) or bool(kept)
        if depth is None:
            if buffered and self.depth_matched:
                self.ctx.warn("depth/unmatched_stamp", "no depth within sync_tolerance of the image; 3D values are NaN")
            elif buffered:  # depth has never matched yet: its reader was matched by DDS after the image's
                self.ctx.stats.count("depth/unmatched_before_first_match")
            return None, None
        self.depth_matched = True
        K = self._camera_K(msg)
        return (depth, K) if K is not None else (None, None)

    def _camera_K(self, msg) -> Optional[np.ndarray]:
        if self.K is None:
            self.ctx.warn("depth/no_camera_info", "depth without camera_info; 3D values are NaN")
            return None
        w, h = image_size(msg)
        if self.K_size != (0, 0) and w and self.K_size != (w, h):
            self.ctx.bad_input("camera_info_size", f"camera_info is for {self.K_size[0]}x{self.K_size[1]} but the "
                                                   f"image is {w}x{h}: its K does not apply; 3D values are NaN",
                               "camera_info")
            return None
        return self.K

    def reset(self) -> None:
        """Deactivation: nothing from before it is processed after."""
        self.slot.clear()
        self.latest = None
        self.depth_matched = False
        with self._depth_cv:
            self._depth.clear()
