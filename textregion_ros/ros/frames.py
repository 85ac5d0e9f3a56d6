"""The output frame of 3D results: ``target_frame`` through tf2 when a ROS install has it.

tf2_ros is not on PyPI (the wheels this project tests with lack it), so it is imported when
present; without it the node says so once and publishes 3D in the camera's optical frame.
"""
from __future__ import annotations

from typing import Tuple

from ..geometry.transform import RigidTransform

try:  # a real ROS install
    import tf2_ros
except ImportError:  # the PyPI wheels
    tf2_ros = None


def transform_from_msg(ts) -> RigidTransform:
    """geometry_msgs/TransformStamped -> RigidTransform (points in child frame -> header frame)."""
    r, t = ts.transform.rotation, ts.transform.translation
    return RigidTransform.from_quaternion([r.x, r.y, r.z, r.w], [t.x, t.y, t.z])


class OutputFrame:
    def __init__(self, node, target_frame: str, timeout_s: float, stats, tf=None):
        self.node, self.target_frame, self.timeout_s, self.stats = node, target_frame, timeout_s, stats
        self.buffer = None
        if not target_frame:
            return
        module = tf if tf is not None else tf2_ros
        if module is None:
            node.get_logger().info(f"target_frame {target_frame!r} is set but tf2_ros is not installed; 3D outputs "
                                   f"stay in the camera's optical frame")
            return
        self.buffer = module.Buffer()
        self.listener = module.TransformListener(self.buffer, node)

    def resolve(self, header) -> Tuple[str, RigidTransform]:
        """(frame_id, camera-to-output transform) at the image's stamp; the camera frame on failure."""
        if self.buffer is None or self.target_frame == header.frame_id:
            return header.frame_id, RigidTransform.identity()
        try:
            from rclpy.duration import Duration
            from rclpy.time import Time

            ts = self.buffer.lookup_transform(self.target_frame, header.frame_id, Time.from_msg(header.stamp),
                                              timeout=Duration(seconds=self.timeout_s))
            return self.target_frame, transform_from_msg(ts)
        except Exception as exc:  # tf2's lookup, connectivity and extrapolation errors, or a bad transform
            self.stats.count("tf/unavailable")
            self.node.get_logger().warning(
                f"no transform {header.frame_id} -> {self.target_frame} at the image stamp ({type(exc).__name__}); "
                f"publishing in {header.frame_id}", throttle_duration_sec=5.0)
            return header.frame_id, RigidTransform.identity()


def header_in(header, frame_id: str):
    """A copy of ``header`` with another frame_id (the stamp stays the image's)."""
    from std_msgs.msg import Header

    return Header(stamp=header.stamp, frame_id=frame_id)


__all__ = ["OutputFrame", "header_in", "tf2_ros", "transform_from_msg"]
