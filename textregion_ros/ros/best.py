"""grounded_best: where the active query is, over every camera ("where is the red mug, in any camera").

Each camera's publish stage reports its frame's active grounding here; the answer is the found grounding
of highest score among the cameras' latest, where "latest" means stamped within ``best_window`` seconds
of the newest report (a camera that stopped long ago does not answer for now). When none is found, the
best score answers with found false. It keeps its camera's header (frame_id, stamp) and its 3D point
(in target_frame when set, as that camera's grounded_point).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Dict, List, Optional

from .context import NodeContext
from .outputs import BEST_OUTPUTS, _grounded_point, listening


@dataclass
class Report:
    stamp_ns: int
    grounded: object  # textregion_ros/GroundedRegion, in that camera's frame
    point: object  # geometry_msgs/PointStamped or None (no valid depth, or not found)


@dataclass
class BestView:
    best: Optional[Report]


class BestAcrossCameras:
    def __init__(self, ctx: NodeContext, cameras: List, publishers: Dict[str, object]):
        self.ctx, self.publishers = ctx, publishers
        self._lock = threading.Lock()
        self._latest: Dict[str, Report] = {}
        for cam in cameras:
            cam.publisher.on_frame = lambda item, view, name=cam.name: self.report(name, item, view)
            cam.publisher.also_wanted = self.wanted

    def wanted(self) -> bool:
        return any(listening(row, self.publishers, self.ctx.settings) for row in BEST_OUTPUTS)

    def report(self, camera: str, item, view) -> None:
        """From a camera's publish stage, after its frame's outputs are out."""
        if view.active_grounding is None:
            return
        rep = Report(item.stamp_ns, view.grounded_msgs[-1], _grounded_point(view))
        with self._lock:
            self._latest[camera] = rep
            window = self.ctx.settings.best_window * 1e9
            newest = max(r.stamp_ns for r in self._latest.values())
            fresh = [r for r in self._latest.values() if r.grounded.query == rep.grounded.query
                     and newest - r.stamp_ns <= window]
            best = max(fresh, key=lambda r: (r.grounded.found, r.grounded.score))
        view = BestView(best)
        for row in BEST_OUTPUTS:
            if listening(row, self.publishers, self.ctx.settings):
                msg = row.build(view)
                if msg is not None:
                    self.publishers[row.name].publish(msg)
