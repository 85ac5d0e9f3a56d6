"""What every part of the node shares: logger, counters, clock, the settings in force, the models.

Parameters are applied by replacing ``settings`` (or updating the pipeline) here, in one place;
each part reads ``ctx.settings`` when it acts, so a runtime change reaches every part at once.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .diagnostics import Stats
from .settings import NodeSettings

LOG_EVERY_S = 5.0  # one line per kind of bad input and condition at most this often


@dataclass
class NodeContext:
    logger: Any  # rclpy's RcutilsLogger
    stats: Stats
    now_ns: Callable[[], int]  # the node's clock (sim time when use_sim_time)
    settings: NodeSettings
    pipeline: Any = None  # textregion_ros.pipeline.Pipeline once configured
    random_weights: bool = False
    # Held while pipeline.config changes: by the inference stage's runtime updates and the text stage's
    # vocabulary swap, which would otherwise lose each other's change.
    config_lock: threading.Lock = field(default_factory=threading.Lock)

    # When each kind of line was last logged (monotonic s). rclpy's own throttle costs about 0.4 ms a call (it
    # inspects the caller's frame), which a flood of bad messages pays on every one: the check is made here first.
    _logged: dict = field(default_factory=dict, init=False, repr=False)  # each camera's context has its own

    def _due(self, key: str, period_s: float = LOG_EVERY_S) -> bool:
        now = time.monotonic()
        if now - self._logged.get(key, -period_s) < period_s:
            return False
        self._logged[key] = now
        return True

    def bad_input(self, reason: str, detail: str, what: str = "frame") -> None:
        """Input we cannot use: one count under bad_input/<reason> and a throttled line."""
        self.stats.count(f"bad_input/{reason}")
        if self._due(f"bad_input/{reason}"):
            self.logger.warning(f"skipping {what}: {detail}")

    def warn(self, key: str, text: str, n: int = 1) -> None:
        """A counted condition that is not a refused input (depth/*, tf/*): count and a throttled line."""
        self.stats.count(key, n)
        if self._due(key):
            self.logger.warning(text)
