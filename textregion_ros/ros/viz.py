"""Overlay text and RViz markers (host side; the overlay's pixels are composed on the device)."""
from __future__ import annotations

from typing import List, Optional, Sequence

import cv2
import numpy as np
from geometry_msgs.msg import Point
from visualization_msgs.msg import Marker, MarkerArray


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
    clear = Marker()
    clear.header = header
    clear.action = Marker.DELETEALL
    arr.markers.append(clear)
    if points is not None:
        for i, (label, p) in enumerate(zip(labels, points)):
            if not np.all(np.isfinite(p)):
                continue
            m = Marker()
            m.header, m.ns, m.id = header, f"{namespace}/labels", i
            m.type, m.action = Marker.TEXT_VIEW_FACING, Marker.ADD
            m.pose.position = Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))
            m.pose.orientation.w = 1.0
            m.scale.z = 0.06
            m.color.r, m.color.g, m.color.b = (float(c) / 255 for c in colors[i])
            m.color.a = 1.0
            m.text = label
            set_lifetime(m, lifetime_s)
            arr.markers.append(m)
    if grounded_point is not None:
        m = Marker()
        m.header, m.ns, m.id = header, f"{namespace}/grounded", 0
        m.type, m.action = Marker.SPHERE, Marker.ADD
        m.pose.position = Point(x=float(grounded_point[0]), y=float(grounded_point[1]), z=float(grounded_point[2]))
        m.pose.orientation.w = 1.0
        m.scale.x = m.scale.y = m.scale.z = 0.08
        m.color.g, m.color.a = 1.0, 0.9
        set_lifetime(m, lifetime_s)
        arr.markers.append(m)
    return arr


def box_markers(header, boxes: np.ndarray, points: Optional[np.ndarray], K: Optional[np.ndarray],
                colors: np.ndarray, namespace: str = "textregion", lifetime_s: float = 0.5) -> List[Marker]:
    """Each region's 2D box back-projected at its median depth, as a LINE_STRIP in the camera frame."""
    out: List[Marker] = []
    if points is None or K is None:
        return out
    for i, (box, p) in enumerate(zip(boxes, points)):
        if not np.all(np.isfinite(p)):
            continue
        z = float(p[2])
        x0, y0, x1, y1 = (float(v) for v in box)
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        m = Marker()
        m.header, m.ns, m.id = header, f"{namespace}/boxes", i
        m.type, m.action = Marker.LINE_STRIP, Marker.ADD
        m.pose.orientation.w = 1.0
        m.scale.x = 0.01
        m.color.r, m.color.g, m.color.b = (float(c) / 255 for c in colors[i])
        m.color.a = 1.0
        m.points = [Point(x=(u - K[0, 2]) * z / K[0, 0], y=(v - K[1, 2]) * z / K[1, 1], z=z) for u, v in corners]
        set_lifetime(m, lifetime_s)
        out.append(m)
    return out


def set_lifetime(m: Marker, seconds: float) -> None:
    m.lifetime.sec = int(seconds)
    m.lifetime.nanosec = int((seconds - int(seconds)) * 1e9)
