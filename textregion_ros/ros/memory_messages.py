"""The object memory as ROS messages: MemoryObject(Array), boxes and labels for RViz, one cloud."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, PoseStamped, Vector3
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from ..memory import MemoryObject
from .prototype import like
from .target3d import cloud_msg, pose_from
from .viz import pose_at, rgba

PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40]])


class MessageCache:
    """Each remembered object's messages (its MemoryObject, its box and label markers), built again only when
    the object has changed since. Building them for every object on each publication cost about a second
    per thousand objects on the CPU; a frame changes the few dozen objects it saw."""

    def __init__(self) -> None:
        self._kinds: Dict[str, Dict[int, Tuple[MemoryObject, tuple, Any]]] = {}

    def get(self, kind: str, objects: List[MemoryObject], build: Callable[[MemoryObject], Any]) -> List[Any]:
        """``build(o)`` for each object, from the cache where the object is the same and unchanged; entries of
        objects no longer remembered are dropped."""
        old, new = self._kinds.get(kind, {}), {}
        for o in objects:
            sig = signature(o)
            e = old.get(o.id)
            new[o.id] = e if e is not None and e[0] is o and e[1] == sig else (o, sig, build(o))
        self._kinds[kind] = new
        return [new[o.id][2] for o in objects]


def signature(o: MemoryObject) -> tuple:
    """What changes whenever anything its messages show does: its voxels and label votes change only in a
    fusion or a merge, and both count observations and move the last-seen stamp."""
    return o.observations, o.last_seen_ns, o.first_seen_ns, len(o.keys), o.voxel_size, o.camera


@dataclass
class MemoryView:
    """What the memory outputs are built from, taken under the memory's lock."""
    objects: List[MemoryObject]
    header: object  # frame_id = memory_frame, stamp = the last fused frame's
    grounded: Optional[MemoryObject]  # the active query's best remembered object, when it is found
    max_points: int
    cache: MessageCache = field(default_factory=MessageCache)  # the stage's own, kept between publications


def _time(ns: int) -> Time:
    return Time(sec=int(ns // 10**9), nanosec=int(ns % 10**9))


def _point(p) -> Point:
    return Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))


def object_msg(msgs, o: MemoryObject, score: float = 0.0):
    m = msgs.MemoryObject()
    m.id, m.label, m.label_score, m.score = int(o.id), o.label, float(o.label_score), float(score)
    centre, axes, size = o.oriented_box()
    m.pose = pose_from(centre, axes)
    m.size = Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2]))
    lo, hi = o.bounds()
    m.centroid, m.aabb_min, m.aabb_max = _point(o.centroid), _point(lo), _point(hi)
    m.num_points, m.times_seen = len(o.keys), int(o.observations)
    m.first_seen, m.last_seen, m.camera = _time(o.first_seen_ns), _time(o.last_seen_ns), o.camera
    return m


def objects_msg(msgs, v: MemoryView):
    arr = msgs.MemoryObjectArray()
    arr.header = v.header
    arr.objects = v.cache.get("object", v.objects, lambda o: object_msg(msgs, o))
    return arr


BOX = Marker(type=Marker.CUBE, action=Marker.ADD, ns="textregion/memory/boxes")  # copied (prototype.py)
TEXT = Marker(type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, ns="textregion/memory/labels",
              scale=Vector3(z=0.06), color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0))


def object_markers(o: MemoryObject) -> Tuple[Marker, Marker]:
    """Its box and its label (headers are set on each publication)."""
    centre, axes, size = o.oriented_box()
    box = like(BOX)
    box.id = int(o.id)
    box.pose = pose_from(centre, axes)
    box.scale = Vector3(x=max(float(size[0]), 1e-3), y=max(float(size[1]), 1e-3), z=max(float(size[2]), 1e-3))
    box.color = rgba(PALETTE[o.id % len(PALETTE)], alpha=0.4)
    text = like(TEXT)
    text.id = int(o.id)
    text.text = f"{o.label} #{o.id} ({o.observations}x)"
    text.pose = pose_at((centre + np.array([0.0, 0.0, size[2] / 2 + 0.05])).tolist())
    return box, text


def markers(v: MemoryView) -> MarkerArray:
    """A DELETEALL first (objects the memory dropped disappear), then a box and a label per object."""
    clear = Marker(action=Marker.DELETEALL)
    clear.header, clear.ns = v.header, "textregion/memory"
    out = [clear]
    for pair in v.cache.get("markers", v.objects, object_markers):
        for m in pair:
            m.header = v.header
        out += pair
    return MarkerArray(markers=out)


def cloud(v: MemoryView):
    """Every object's points, coloured by object, evenly subsampled to max_points."""
    pts = [o.points for o in v.objects]
    cols = [np.broadcast_to(PALETTE[o.id % len(PALETTE)], (len(o.keys), 3)) for o in v.objects]
    points = np.concatenate(pts).astype(np.float32) if pts else np.zeros((0, 3), np.float32)
    colours = np.concatenate(cols) if cols else np.zeros((0, 3), np.int64)
    if len(points) > v.max_points:
        keep = np.linspace(0, len(points) - 1, v.max_points).astype(int)
        points, colours = points[keep], colours[keep]
    return cloud_msg(points, colours, v.header)


def grounded(v: MemoryView) -> Optional[PoseStamped]:
    """The active query's remembered object, even out of view: a navigation goal can be derived from it."""
    if v.grounded is None:
        return None
    _, axes, _ = v.grounded.oriented_box()
    msg = PoseStamped()
    msg.header, msg.pose = v.header, pose_from(v.grounded.centroid, axes)
    return msg
