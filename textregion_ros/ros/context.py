"""What every part of the node shares: logger, counters, clock, the settings in force, the models.

Parameters are applied by replacing ``settings`` (or updating the pipeline) here, in one place;
each part reads ``ctx.settings`` when it acts, so a runtime change reaches every part at once.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from .diagnostics import Stats
from .settings import NodeSettings


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

    def bad_input(self, reason: str, detail: str, what: str = "frame") -> None:
        """Input we cannot use: one count under bad_input/<reason> and a throttled line."""
        self.stats.count(f"bad_input/{reason}")
        self.logger.warning(f"skipping {what}: {detail}", throttle_duration_sec=5.0)

    def warn(self, key: str, text: str, n: int = 1) -> None:
        """A counted condition that is not a refused input (depth/*, tf/*): count and a throttled line."""
        self.stats.count(key, n)
        self.logger.warning(text, throttle_duration_sec=5.0)
