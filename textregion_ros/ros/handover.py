"""What the node's stages hand each other: LatestSlot, the one hand-over primitive, and Processed, the
inference stage's frame as the publish stage takes it.

A slot holds at most one item. ``put`` replaces an item nobody took yet (newest wins: a camera
frame or a result that waited is stale once a newer one exists) and says so, so the producer can
count the drop. ``take`` waits for an item and marks the consumer busy until ``done``; ``idle``
is then "nothing waiting and nothing in hand", which is what tests and services wait on.
``close`` wakes every waiter and makes ``take`` return None for good.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, Optional, TypeVar

import numpy as np

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._item: Optional[T] = None
        self._in_hand = False
        self._closed = False
        self.puts = 0  # items ever put
        self._item_seq = 0
        # (sequence number of the item last taken, items put by then): equal when it was the newest.
        self.last_taken = (0, 0)

    def put(self, item: T) -> bool:
        """Store ``item``; True when it replaced one that was never taken (a drop)."""
        with self._cv:
            replaced = self._item is not None
            self._store(item)
            return replaced

    def offer(self, item: T) -> None:
        """Store ``item`` only when the slot is empty (a newer waiting item wins); never a drop."""
        with self._cv:
            if self._item is None:
                self._store(item)

    def _store(self, item: T) -> None:
        self._item = item
        self.puts += 1
        self._item_seq = self.puts
        self._cv.notify_all()

    def take(self, timeout: Optional[float] = None) -> Optional[T]:
        """The waiting item (the consumer is then busy until done()); None on close or timeout."""
        with self._cv:
            if not self._cv.wait_for(lambda: self._closed or self._item is not None, timeout):
                return None
            if self._closed:
                return None
            item, self._item = self._item, None
            self.last_taken = (self._item_seq, self.puts)
            self._in_hand = True  # with the take, so "idle" never sees a gap between the two
            return item

    def done(self) -> None:
        with self._cv:
            self._in_hand = False
            self._cv.notify_all()

    def clear(self) -> None:
        """Drop a waiting item (deactivation: frames from before it are never processed after)."""
        with self._cv:
            self._item = None
            self._cv.notify_all()

    @property
    def busy(self) -> bool:
        return self._in_hand

    def idle(self) -> bool:
        with self._cv:
            return self._item is None and not self._in_hand

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def reopen(self) -> None:
        with self._cv:
            self._closed, self._item, self._in_hand = False, None, False


@dataclass
class Processed:
    result: "FrameResult"  # results.py
    image: Optional["torch.Tensor"]  # (H, W, 3) uint8 on the device
    msg: object  # the image message (its header; its size for camera_info checks)
    queries: "QuerySet"  # text_stage.py
    stamp_ns: int
    partial: bool = False  # not a full frame: target mode's candidates, or the target SAM2 carried (result.kind)
    depth: object = None  # sensor_msgs/Image matched at publish time (Intake.match_depth), or None
    depths: tuple = ()  # the depth frames near its stamp when it was taken, for that match
    K: Optional[np.ndarray] = None
    demanded: bool = False  # processed for a service call while no output had a reader
    camera: str = ""  # the camera it came from ("" = the unnamed default)

    @property
    def header(self):
        return self.msg.header
