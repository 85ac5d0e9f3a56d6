"""3D from registered depth, as plain tensor math (no ROS): per-region points and extents, the
grounded target's cloud and boxes, and rigid transforms. Camera optical frame (REP-103: x right,
y down, z forward), metres."""
from .points import region_points, region_stats
from .target import TargetGeometry, oriented_box, target_geometry, target_points
from .transform import RigidTransform

__all__ = ["RigidTransform", "TargetGeometry", "oriented_box", "region_points", "region_stats", "target_geometry",
           "target_points"]
