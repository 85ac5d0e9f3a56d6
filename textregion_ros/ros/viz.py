"""Overlay text and RViz markers (host side; the overlay's pixels are composed on the device)."""
from __future__ import annotations

from typing import List, Optional, Sequence

import cv2
import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from .prototype import like


def draw_labels(overlay: np.ndarray, labels: Sequence[str], boxes: np.ndarray, scores: np.ndarray,
                colors: np.ndarray, grounded: Optional[int] = None, query: str = "", found: bool = False,
                banner: str = "") -> np.ndarray:
    """Text on the composed overlay (masks, outlines and the grounded border come from the device)."""
    out = overlay if overlay.flags.writeable else overlay.copy()
    for i, (label, box, score) in enumerate(zip(labels, boxes, scores)):
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 <= x0 or y1 <= y0:
            continue
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), tuple(int(c) for c in colors[i]), 1)
        cv2.putText(out, f"{label} {score:.2f}", (x0 + 2, max(y0 + 12, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 255), 1, cv2.LINE_AA)
    if grounded is not None and 0 <= grounded < len(boxes):
        x0, y0, x1, y1 = (int(v) for v in boxes[grounded])
        color = (0, 255, 0) if found else (255, 160, 0)
        cv2.putText(out, f"'{query}'{'' if found else ' (not found)'}", (x0 + 2, min(y1 + 16, out.shape[0] - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.55, color, 2, cv2.LINE_AA)
    if banner:
        cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
        cv2.putText(out, banner, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 80, 80), 1, cv2.LINE_AA)
    return out


def markers(header, labels: Sequence[str], points: Optional[np.ndarray], grounded_point: Optional[Sequence[float]],
            colors: np.ndarray, namespace: str = "textregion", lifetime_s: float = 0.5) -> MarkerArray:
    """Text labels at region centroids, and a sphere at the grounded 3D point. Frame = the image's."""
    arr = MarkerArray()
    arr.markers.append(Marker(header=header, action=Marker.DELETEALL))
    if points is not None:
        proto = Marker(header=header, ns=f"{namespace}/labels", type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                       scale=Vector3(z=0.06), lifetime=duration(lifetime_s))
        n = min(len(labels), len(points))
        for i in np.flatnonzero(np.isfinite(points[:n]).all(1)).tolist():  # copies of one prototype (prototype.py)
            m = like(proto)
            m.id, m.text = i, labels[i]
            m.pose = pose_at(points[i].tolist())
            m.color = rgba(colors[i])
            arr.markers.append(m)
    if grounded_point is not None:
        m = Marker(header=header, ns=f"{namespace}/grounded", id=0, type=Marker.SPHERE, action=Marker.ADD,
                   lifetime=duration(lifetime_s), scale=Vector3(x=0.08, y=0.08, z=0.08),
                   color=ColorRGBA(g=1.0, a=0.9))
        m.pose = pose_at([float(v) for v in grounded_point])
        arr.markers.append(m)
    return arr


def box_markers(header, boxes: np.ndarray, points: Optional[np.ndarray], K: Optional[np.ndarray],
                colors: np.ndarray, namespace: str = "textregion", lifetime_s: float = 0.5) -> List[Marker]:
    """Each region's 2D box back-projected at its median depth, as a LINE_STRIP in the camera frame."""
    out: List[Marker] = []
    if points is None or K is None:
        return out
    proto = Marker(header=header, ns=f"{namespace}/boxes", type=Marker.LINE_STRIP, action=Marker.ADD,
                   pose=pose_at((0.0, 0.0, 0.0)), scale=Vector3(x=0.01), lifetime=duration(lifetime_s))
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    for i in np.flatnonzero(np.isfinite(points).all(1)).tolist():
        z = float(points[i, 2])
        x0, y0, x1, y1 = (float(v) for v in boxes[i].tolist())
        m = like(proto)
        m.id = i
        m.color = rgba(colors[i])
        m.points = [Point(x=(u - cx) * z / fx, y=(v - cy) * z / fy, z=z)
                    for u, v in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
        out.append(m)
    return out


def pose_at(p: Sequence[float]) -> Pose:
    return Pose(position=Point(x=p[0], y=p[1], z=p[2]), orientation=Quaternion(w=1.0))


def rgba(color: np.ndarray, alpha: float = 1.0) -> ColorRGBA:
    r, g, b = (float(c) / 255 for c in color.tolist())
    return ColorRGBA(r=r, g=g, b=b, a=alpha)


def duration(seconds: float) -> Duration:
    return Duration(sec=int(seconds), nanosec=int((seconds - int(seconds)) * 1e9))


def set_lifetime(m: Marker, seconds: float) -> None:
    m.lifetime = duration(seconds)
