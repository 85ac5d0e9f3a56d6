"""The output frame of 3D results: ``target_frame``, through tf2_ros or, without it, our own buffer."""
from __future__ import annotations

from typing import Tuple

from ..geometry.transform import RigidTransform
from .convert import stamp_ns
from .tf_buffer import TransformUnavailable, make_lookup


class OutputFrame:
    def __init__(self, node, target_frame: str, timeout_s: float, stats, lookup=None, on_bad=None):
        self.node, self.target_frame, self.timeout_s, self.stats = node, target_frame, timeout_s, stats
        self.lookup = None
        if target_frame:
            self.lookup = lookup if lookup is not None else make_lookup(node, on_bad)

    def resolve(self, header) -> Tuple[str, RigidTransform]:
        """(frame_id, camera-to-output transform) at the image's stamp; the camera frame on failure."""
        if self.lookup is None or self.target_frame == header.frame_id:
            return header.frame_id, RigidTransform.identity()
        try:
            T = self.lookup.lookup(self.target_frame, header.frame_id, stamp_ns(header.stamp), self.timeout_s)
            return self.target_frame, T
        except TransformUnavailable as exc:
            self.stats.count("tf/unavailable")
            self.node.get_logger().warning(
                f"no transform {header.frame_id} -> {self.target_frame} at the image stamp ({exc}); "
                f"publishing in {header.frame_id}", throttle_duration_sec=5.0)
            return header.frame_id, RigidTransform.identity()


def header_in(header, frame_id: str):
    """A copy of ``header`` with another frame_id (the stamp stays the image's)."""
    from std_msgs.msg import Header

    return Header(stamp=header.stamp, frame_id=frame_id)


__all__ = ["OutputFrame", "header_in"]
