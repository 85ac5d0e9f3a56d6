"""FrameOutputs (host arrays from compose()) -> textregion_ros messages. Filling fields only."""
from __future__ import annotations

import array
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


class RegionColumns:
    """One frame's per-region fields as Python values, each converted once for the whole frame.

    Indexing a numpy array one scalar at a time, and scaling each region's crop by 255 in its own numpy call,
    were most of a 64-region RegionArray's build, all of it Python holding the GIL beside the inference
    thread. Here each column is one ``tolist()`` and the masks one multiplication, sliced per region."""

    def __init__(self, out: FrameOutputs, with_mask: bool = True):
        n = len(out)
        nan3 = [(NAN, NAN, NAN)] * n
        self.label, self.prob, self.cosine = out.label.tolist(), out.prob.tolist(), out.cosine.tolist()
        self.area, self.boxes = out.area.tolist(), out.boxes.tolist()
        self.track = out.track_ids.tolist() if out.track_ids is not None else [0] * n
        self.points = out.points.tolist() if out.points is not None else nan3
        self.sizes = out.sizes.tolist() if out.sizes is not None else nan3
        self.masks = self.starts = None
        if with_mask and out.crop_data is not None:
            self.masks = memoryview(np.ascontiguousarray(out.crop_data, np.uint8).reshape(-1) * np.uint8(255))
            self.starts = out.crop_start.tolist()

    def mask_bytes(self, i: int, size: int) -> array.array:
        data = array.array("B")
        data.frombytes(self.masks[self.starts[i]:self.starts[i] + size])
        return data


def region_msg(Region, labels: Sequence[str], cols: RegionColumns, i: int, header, tokens: Optional[np.ndarray] = None,
               crop: Optional[np.ndarray] = None, proto=None):
    """Region i of a frame's ``cols``. ``proto``: a Region to copy (prototype.py), made once per frame by the
    caller; its mask is this frame's empty mono8 Image under ``header``. ``crop``: region i's 0/1 mask in its box,
    when the caller has it and ``cols`` carries no masks (grounded_msg)."""
    proto = proto if proto is not None else region_prototype(Region, header)
    r = like(proto)
    r.id = i
    r.track_id = int(cols.track[i])
    r.label_index = label = int(cols.label[i])
    r.label = labels[label]
    r.score, r.cosine = cols.prob[i], cols.cosine[i]
    x0, y0, x1, y1 = cols.boxes[i]
    w, h = max(x1 - x0, 0), max(y1 - y0, 0)
    r.bbox = RegionOfInterest(x_offset=x0, y_offset=y0, width=w, height=h)
    r.area = int(cols.area[i])
    if cols.masks is not None and w and h:
        r.mask = like(proto.mask)
        r.mask.height, r.mask.width, r.mask.step = h, w, w
        r.mask.data = cols.mask_bytes(i, w * h)
    elif crop is not None and crop.size:
        r.mask = mask_image(proto.mask, crop)
    p, e = cols.points[i], cols.sizes[i]
    r.centroid = Point(x=p[0], y=p[1], z=p[2])
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
    proto, cols = region_prototype(msgs.Region, header), RegionColumns(out, with_mask)
    msg.regions = [region_msg(msgs.Region, labels, cols, i, header, tokens, proto=proto) for i in range(len(out))]
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
        if with_mask and crop is None and out.crop_data is not None:
            crop = out.crop(g.region)
        msg.region = region_msg(msgs.Region, labels, RegionColumns(out, with_mask=False), g.region, header,
                                crop=crop if with_mask else None)
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
