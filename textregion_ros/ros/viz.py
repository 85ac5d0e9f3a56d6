"""Overlay image and RViz markers from a processed frame (numpy + OpenCV, no GPU)."""
from __future__ import annotations

import colorsys
from typing import List, Optional, Sequence

import cv2
import numpy as np
from geometry_msgs.msg import Point
from visualization_msgs.msg import Marker, MarkerArray


def palette(n: int) -> np.ndarray:
    """n distinct RGB colors (golden-ratio hues)."""
    return np.array([[int(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 0.95)]
                     for i in range(max(n, 1))], np.uint8)


def draw_overlay(rgb: np.ndarray, instance: np.ndarray, labels: Sequence[str], boxes: np.ndarray,
                 scores: np.ndarray, grounded: Optional[int] = None, query: str = "", found: bool = False,
                 banner: str = "", alpha: float = 0.45) -> np.ndarray:
    """Colored instance masks with labels; the grounded region gets a thick outline and its query."""
    out = rgb.copy()
    n = len(labels)
    colors = palette(n)
    if n:
        color_map = np.concatenate([np.zeros((1, 3), np.uint8), colors])[instance]
        on = instance > 0
        out[on] = (out[on] * (1 - alpha) + color_map[on] * alpha).astype(np.uint8)
    for i, (label, box, score) in enumerate(zip(labels, boxes, scores)):
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 <= x0 or y1 <= y0:
            continue
        c = tuple(int(v) for v in colors[i])
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), c, 1)
        cv2.putText(out, f"{label} {score:.2f}", (x0 + 2, max(y0 + 12, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 255), 1, cv2.LINE_AA)
    if grounded is not None and 0 <= grounded < len(boxes):
        x0, y0, x1, y1 = (int(v) for v in boxes[grounded])
        color = (0, 255, 0) if found else (255, 160, 0)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), color, 3)
        cv2.putText(out, f"'{query}'{'' if found else ' (not found)'}", (x0 + 2, min(y1 + 16, out.shape[0] - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.55, color, 2, cv2.LINE_AA)
    if banner:
        cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
        cv2.putText(out, banner, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 80, 80), 1, cv2.LINE_AA)
    return out


def markers(header, labels: Sequence[str], points: Optional[np.ndarray], grounded_point: Optional[Sequence[float]],
            namespace: str = "textregion", lifetime_s: float = 0.5) -> MarkerArray:
    """Text labels at region centroids, and a sphere at the grounded 3D point. Frame = the image's."""
    arr = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.action = Marker.DELETEALL
    arr.markers.append(clear)
    colors = palette(len(labels))
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
            m.lifetime.nanosec = int(lifetime_s * 1e9)
            arr.markers.append(m)
    if grounded_point is not None:
        m = Marker()
        m.header, m.ns, m.id = header, f"{namespace}/grounded", 0
        m.type, m.action = Marker.SPHERE, Marker.ADD
        m.pose.position = Point(x=float(grounded_point[0]), y=float(grounded_point[1]), z=float(grounded_point[2]))
        m.pose.orientation.w = 1.0
        m.scale.x = m.scale.y = m.scale.z = 0.08
        m.color.g, m.color.a = 1.0, 0.9
        m.lifetime.nanosec = int(lifetime_s * 1e9)
        arr.markers.append(m)
    return arr


def box_markers(header, boxes: np.ndarray, points: Optional[np.ndarray], K: Optional[np.ndarray],
                namespace: str = "textregion") -> List[Marker]:
    """Each region's 2D box back-projected at its median depth, as a LINE_STRIP in the camera frame."""
    out: List[Marker] = []
    if points is None or K is None:
        return out
    colors = palette(len(boxes))
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
        m.lifetime.nanosec = int(0.5e9)
        out.append(m)
    return out
