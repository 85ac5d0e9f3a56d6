"""The grounded target's 3D as ROS messages: PointCloud2, GroundedBox, PoseStamped and box markers.

Everything here fills fields from compose.HostTarget (optical frame) after one rigid transform
into the output frame (ros/output_frame.py): the cloud and the oriented box move with it, and the
axis-aligned box is recomputed from the moved points, so it is aligned with the output frame.
"""
from __future__ import annotations

from typing import List

import numpy as np
from geometry_msgs.msg import Point, Pose, PoseStamped, Vector3
from sensor_msgs.msg import PointCloud2, PointField
from visualization_msgs.msg import Marker

from ..compose import HostTarget
from ..geometry.transform import RigidTransform, quaternion_xyzw
from .convert import packed
from .viz import set_lifetime

# x, y, z, rgb as float32, the layout PCL and RViz read (rgb packed 0x00RRGGBB in a float's bytes).
CLOUD_FIELDS = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                for i, n in enumerate(("x", "y", "z", "rgb"))]


def moved(target: HostTarget, T: RigidTransform) -> HostTarget:
    """The target in the output frame."""
    pts = T.points(target.points).astype(np.float32)
    centre, axes = T.pose(target.obb_centre, target.obb_axes)
    return HostTarget(pts, target.colors, T.points(target.centroid[None])[0],
                      pts.min(0) if len(pts) else target.aabb_min, pts.max(0) if len(pts) else target.aabb_max,
                      centre, axes, target.obb_size)


def point_cloud(target: HostTarget, header) -> PointCloud2:
    return cloud_msg(target.points, target.colors, header)


def cloud_msg(points: np.ndarray, colors, header) -> PointCloud2:
    """Unorganised (height 1), dense: only clean points are sent. ``colors``: (N, 3) uint8 or None (white)."""
    n = len(points)
    buf = np.empty((n, 4), np.float32)
    buf[:, :3] = points
    if colors is not None:
        c = np.asarray(colors).astype(np.uint32)
        buf[:, 3] = ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).view(np.float32)
    else:
        buf[:, 3] = np.full(n, 0x00FFFFFF, np.uint32).view(np.float32)
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, n
    msg.fields = CLOUD_FIELDS
    msg.is_bigendian = False
    msg.point_step, msg.row_step = 16, 16 * n
    msg.is_dense = True
    msg.data = packed(buf)
    return msg


def pose(target: HostTarget) -> Pose:
    return pose_from(target.obb_centre, target.obb_axes)


def pose_from(centre, axes) -> Pose:
    """A position (3,) and an orientation given as axes (3, 3) columns -> geometry_msgs/Pose."""
    p = Pose()
    p.position = Point(x=float(centre[0]), y=float(centre[1]), z=float(centre[2]))
    q = quaternion_xyzw(axes)
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in q)
    return p


def pose_stamped(target: HostTarget, header) -> PoseStamped:
    msg = PoseStamped()
    msg.header = header
    msg.pose = pose(target)
    return msg


def grounded_box(msgs, target: HostTarget, header, query: str, track_id: int, kind: str = "full"):
    msg = msgs.GroundedBox()
    msg.header, msg.frame_kind = header, kind
    msg.query, msg.track_id = query, int(track_id)
    msg.pose = pose(target)
    msg.size = Vector3(x=float(target.obb_size[0]), y=float(target.obb_size[1]), z=float(target.obb_size[2]))
    msg.aabb_min = Point(x=float(target.aabb_min[0]), y=float(target.aabb_min[1]), z=float(target.aabb_min[2]))
    msg.aabb_max = Point(x=float(target.aabb_max[0]), y=float(target.aabb_max[1]), z=float(target.aabb_max[2]))
    msg.centroid = Point(x=float(target.centroid[0]), y=float(target.centroid[1]), z=float(target.centroid[2]))
    msg.num_points = len(target.points)
    return msg


def box_markers(target: HostTarget, header, namespace: str = "textregion", lifetime_s: float = 0.5) -> List[Marker]:
    """The oriented box as a translucent CUBE and the axis-aligned one as a LINE_LIST."""
    cube = Marker()
    cube.header, cube.ns, cube.id = header, f"{namespace}/grounded_box", 0
    cube.type, cube.action = Marker.CUBE, Marker.ADD
    cube.pose = pose(target)
    cube.scale.x, cube.scale.y, cube.scale.z = (max(float(v), 1e-3) for v in target.obb_size)
    cube.color.g, cube.color.a = 1.0, 0.35
    lines = Marker()
    lines.header, lines.ns, lines.id = header, f"{namespace}/grounded_aabb", 0
    lines.type, lines.action = Marker.LINE_LIST, Marker.ADD
    lines.pose.orientation.w = 1.0
    lines.scale.x = 0.004
    lines.color.g = lines.color.b = lines.color.a = 1.0
    lo, hi = target.aabb_min, target.aabb_max
    corner = lambda i: Point(x=float((lo, hi)[i & 1][0]), y=float((lo, hi)[(i >> 1) & 1][1]),  # noqa: E731
                             z=float((lo, hi)[(i >> 2) & 1][2]))
    for a in range(8):  # the 12 edges: corners differing in one coordinate bit
        for bit in (1, 2, 4):
            if not a & bit:
                lines.points.extend([corner(a), corner(a | bit)])
    for m in (cube, lines):
        set_lifetime(m, lifetime_s)
    return [cube, lines]
