"""FrameOutputs (host arrays from compose()) -> textregion_ros messages. Filling fields only."""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import numpy as np
from geometry_msgs.msg import Point, PointStamped, Vector3
from sensor_msgs.msg import RegionOfInterest

from ..compose import FrameOutputs
from ..results import Grounding
from .convert import array_to_image, packed
from .prototype import like

NAN = float("nan")


def region_msg(Region, labels: Sequence[str], out: FrameOutputs, i: int, header, with_mask: bool = True,
               tokens: Optional[np.ndarray] = None, crop: Optional[np.ndarray] = None, proto=None):
    """Region i of ``out``. ``proto``: a Region to copy (prototype.py), made once per frame by the caller; its
    mask is this frame's empty mono8 Image under ``header``."""
    proto = proto if proto is not None else region_prototype(Region, header)
    r = like(proto)
    r.id = i
    r.track_id = int(out.track_ids[i]) if out.track_ids is not None else 0
    r.label_index = int(out.label[i])
    r.label = labels[r.label_index]
    r.score = float(out.prob[i])
    r.cosine = float(out.cosine[i])
    x0, y0, x1, y1 = out.boxes[i].tolist()
    r.bbox = RegionOfInterest(x_offset=x0, y_offset=y0, width=max(x1 - x0, 0), height=max(y1 - y0, 0))
    r.area = int(out.area[i])
    if crop is None and with_mask and out.crop_data is not None and x1 > x0 and y1 > y0:
        crop = out.crop(i)
    if with_mask and crop is not None and crop.size:
        r.mask = mask_image(proto.mask, crop)
    p = out.points[i].tolist() if out.points is not None else (NAN, NAN, NAN)
    r.centroid = Point(x=p[0], y=p[1], z=p[2])
    e = out.sizes[i].tolist() if out.sizes is not None else (NAN, NAN, NAN)
    r.size = Vector3(x=e[0], y=e[1], z=e[2])
    if tokens is not None:
        r.token = packed(tokens[i], "f")
    return r


def region_prototype(Region, header):
    """An empty Region whose mask is an empty mono8 Image under ``header`` (copied for each region)."""
    proto = Region()
    proto.mask = array_to_image(np.zeros((0, 0), np.uint8), "mono8", header)
    return proto


def mask_image(proto, crop: np.ndarray):
    """A region's (h, w) 0/1 crop as a mono8 Image (0/255), copied from ``proto`` (header and encoding set)."""
    img = like(proto)
    img.height, img.width = int(crop.shape[0]), int(crop.shape[1])
    img.step = img.width
    img.data = packed(crop * np.uint8(255))
    return img


def region_array_msg(msgs, labels: Sequence[str], num_background: int, out: FrameOutputs, header,
                     tokens: Optional[np.ndarray] = None, with_mask: bool = True, kind: str = "full"):
    msg = msgs.RegionArray()
    msg.header, msg.frame_kind = header, kind
    msg.labels = list(labels)
    msg.num_background = num_background
    proto = region_prototype(msgs.Region, header)
    msg.regions = [region_msg(msgs.Region, labels, out, i, header, with_mask, tokens, proto=proto)
                   for i in range(len(out))]
    return msg


def grounded_msg(msgs, labels: Sequence[str], out: Optional[FrameOutputs], g: Grounding, header,
                 with_mask: bool = True, crop: Optional[np.ndarray] = None, kind: str = "full"):
    msg = msgs.GroundedRegion()
    msg.header, msg.frame_kind = header, kind
    msg.query = g.query
    msg.found = bool(g.found)
    msg.score, msg.cosine, msg.margin = float(g.prob), float(g.cosine), float(g.margin)
    msg.track_id, msg.locked = int(g.track_id), bool(g.locked)
    if out is not None and 0 <= g.region < len(out):
        msg.region = region_msg(msgs.Region, labels, out, g.region, header, with_mask, crop=crop)
    else:
        msg.region.centroid = Point(x=NAN, y=NAN, z=NAN)
    return msg


def grounded_array_msg(msgs, items: List, header, kind: str = "full"):
    msg = msgs.GroundedRegionArray()
    msg.header, msg.frame_kind = header, kind
    msg.results = items
    return msg


def grounded_point(out: FrameOutputs, g: Optional[Grounding], header) -> Optional[PointStamped]:
    """The grounded region's median 3D point, when found and its depth is valid."""
    if g is None or not g.found or not 0 <= g.region < len(out) or out.points is None:
        return None
    p = out.points[g.region]
    if not all(math.isfinite(float(v)) for v in p):
        return None
    ps = PointStamped()
    ps.header = header
    ps.point.x, ps.point.y, ps.point.z = (float(v) for v in p)
    return ps
