"""The node's stages' common parts: StageThread (the worker thread), Stage (start, stop, alive) and
SlotStage (a stage fed through one LatestSlot, with its error rule)."""
from __future__ import annotations

import threading
from typing import Callable, Optional

JOIN_S = 30.0  # a stage finishes the frame it is in before it stops


class StageThread:
    def __init__(self, name: str, loop: Callable[[], None]):
        self.name, self.loop = name, loop
        self.running = False  # the loop checks it between items
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self.running = True
        self._thread = threading.Thread(target=self.loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, wake: Callable[[], None]) -> None:
        """Stop after the current item; ``wake`` releases the loop from its wait (closes its slot)."""
        self.running = False
        wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=JOIN_S)
        self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class Stage:
    """What every stage shares: its thread, started and stopped with the lifecycle. A subclass gives the
    thread's name and ``_loop``, and ``_wake`` to release the loop from its wait."""

    def __init__(self, ctx, thread_name: str):
        self.ctx = ctx
        self.worker = StageThread(thread_name, self._loop)

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop(self._wake)

    @property
    def alive(self) -> bool:
        return self.worker.alive

    def _wake(self) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        raise NotImplementedError


class SlotStage(Stage):
    """A stage fed through one LatestSlot: ``handle`` gets each item, or None after ``tick_s`` without one (a
    periodic turn). A failure is ours, never the input's: counted as ``errors/<what>`` and logged, and the
    stage goes on with the next item."""

    def __init__(self, ctx, thread_name: str, slot, what: str, tick_s: float):
        super().__init__(ctx, thread_name)
        self.slot, self.what, self.tick_s = slot, what, tick_s

    def handle(self, item) -> None:
        raise NotImplementedError

    def _wake(self) -> None:
        self.slot.close()

    def _loop(self) -> None:
        while self.worker.running:
            item = self.slot.take(self.tick_s)
            try:
                self.handle(item)
            except Exception as exc:  # the node must survive anything a frame can do
                if not self.worker.running:
                    return  # shutting down: nothing to report
                self.ctx.stats.count(f"errors/{self.what}")
                self.ctx.logger.error(f"{self.what} failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
            finally:
                if item is not None:
                    self.slot.done()
