"""StageThread: the worker thread of one of the node's stages (inference, publish, text)."""
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
