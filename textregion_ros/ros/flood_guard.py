"""A camera whose image topic floods the node with frames it must refuse stops being listened to, for a while.

Refusing a frame is cheap once it is here (the header checks run before any copy or decode), but DDS still
receives and reassembles every one: on a robot's CPU a 60 Hz stream of camera-sized garbage costs the other
cameras a share of their rate that no check in Python can save. So when one camera's image topic brings
FLOOD_REFUSED refused frames within a second and not one usable frame, its image subscription is dropped for
a pause (2 s, doubling while the flood goes on, at most 16 s): DDS then delivers nothing to this process. Each
pause counts bad_input/image_flood and logs why; after it the topic is subscribed again, and one usable frame
resets the backoff. The subscription is dropped and made again only from the node's 1 Hz timer, never from
its own callback. Depth and camera_info are left as they are (they are small and matched by stamp).
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

FLOOD_REFUSED = 30  # refused image frames within one second, with none usable: a flood of garbage
FIRST_PAUSE_S, LONGEST_PAUSE_S = 2.0, 16.0


class FloodGuard:
    def __init__(self, ctx, subscribe: Callable[[], object], destroy: Callable[[object], None], topic: str,
                 clock: Callable[[], float] = time.monotonic):
        self.ctx = ctx
        self._subscribe, self._destroy, self.topic, self.clock = subscribe, destroy, topic, clock
        self._lock = threading.Lock()
        self.sub: Optional[object] = None
        self.paused_until: Optional[float] = None
        self._pause = FIRST_PAUSE_S
        self._window, self._refused, self._usable = 0.0, 0, 0
        self._closed = False

    def open(self) -> None:
        with self._lock:
            self.paused_until, self._pause, self._closed = None, FIRST_PAUSE_S, False
            self._reset_window(self.clock())
            need = self.sub is None
        if need:
            sub = self._subscribe()
            with self._lock:
                self.sub = sub

    def close(self) -> None:
        with self._lock:
            sub, self.sub, self.paused_until, self._closed = self.sub, None, None, True
        if sub is not None:
            self._destroy(sub)

    def _reset_window(self, now: float) -> None:
        self._window, self._refused, self._usable = now, 0, 0

    def usable(self) -> None:
        """A frame passed the checks (intake, executor thread)."""
        with self._lock:
            self._usable += 1
            self._pause = FIRST_PAUSE_S

    def refused(self) -> None:
        """A frame was refused (intake, executor thread): a pause when the second holds only refused ones. The
        subscription itself is dropped by the next tick, outside its own callback and outside this lock."""
        now = self.clock()
        with self._lock:
            if now - self._window >= 1.0:
                self._reset_window(now)
            self._refused += 1
            if self._refused < FLOOD_REFUSED or self._usable or self.sub is None or self.paused_until is not None:
                return
            pause, self.paused_until = self._pause, now + self._pause
            self._pause = min(2 * self._pause, LONGEST_PAUSE_S)
        self.ctx.bad_input("image_flood", f"{self.topic} brought {FLOOD_REFUSED} refused frames within a second "
                                          f"and none usable: not listening to it for {pause:.0f} s", "camera")
        self.ctx.stats.set_flag("image_paused", self.topic)

    def tick(self) -> None:
        """From the node's steady 1 Hz timer: drop a paused topic's subscription, and subscribe again once its
        pause is over."""
        with self._lock:
            paused, sub = self.paused_until, self.sub
            if paused is None:
                return
            if sub is not None:
                self.sub = None
            elif self.clock() >= paused:
                self.paused_until = None
                self._reset_window(self.clock())
            else:
                return
        if sub is not None:
            self._destroy(sub)
            return
        new = self._subscribe()
        with self._lock:
            closed = self._closed
            if not closed:
                self.sub = new
        if closed:  # deactivated while this subscription was being made
            self._destroy(new)
            return
        self.ctx.stats.set_flag("image_paused", "")
