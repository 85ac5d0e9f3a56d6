"""FrameResult -> textregion_ros messages. Host transfers happen here, once per frame."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
from geometry_msgs.msg import Point
from sensor_msgs.msg import RegionOfInterest

from ..results import FrameResult, Grounding
from .convert import array_to_image

NAN = float("nan")


@dataclass
class HostFrame:
    """Per-region values on the host, computed once and shared by every output."""
    label: np.ndarray
    prob: np.ndarray
    cosine: np.ndarray
    boxes: np.ndarray  # (R, 4) xyxy exclusive
    area: np.ndarray
    masks: Optional[np.ndarray]  # (R, H, W) bool, only when someone needs pixels
    points: Optional[np.ndarray]  # (R, 3) metres, NaN without depth
    tokens: Optional[np.ndarray]


def host_frame(result: FrameResult, need_masks: bool, points, need_tokens: bool) -> HostFrame:
    d = result.to_numpy()
    masks = result.binary_masks.cpu().numpy() if need_masks and len(result) else None
    pts = points.float().cpu().numpy() if points is not None else None
    tokens = result.tokens.float().cpu().numpy() if need_tokens else None
    return HostFrame(d["label"], d["prob"], d["cosine"], d["boxes"], d["area"], masks, pts, tokens)


def region_msg(Region, result: FrameResult, host: HostFrame, i: int, header, with_mask: bool = True):
    r = Region()
    r.id = i
    r.label_index = int(host.label[i])
    r.label = result.labels[r.label_index]
    r.score = float(host.prob[i])
    r.cosine = float(host.cosine[i])
    x0, y0, x1, y1 = (int(v) for v in host.boxes[i])
    r.bbox = RegionOfInterest(x_offset=x0, y_offset=y0, width=max(x1 - x0, 0), height=max(y1 - y0, 0))
    r.area = int(host.area[i])
    if with_mask and host.masks is not None and x1 > x0 and y1 > y0:
        crop = host.masks[i, y0:y1, x0:x1].astype(np.uint8) * 255
        r.mask = array_to_image(crop, "mono8", header)
    p = host.points[i] if host.points is not None else (NAN, NAN, NAN)
    r.centroid = Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))
    if host.tokens is not None:
        r.token = host.tokens[i].astype(np.float32).tolist()
    return r


def region_array_msg(msgs, result: FrameResult, host: HostFrame, header):
    out = msgs.RegionArray()
    out.header = header
    out.labels = list(result.labels)
    out.num_background = result.num_background
    out.regions = [region_msg(msgs.Region, result, host, i, header) for i in range(len(result))]
    return out


def grounded_msg(msgs, result: Optional[FrameResult], host: Optional[HostFrame], g: Grounding, header):
    out = msgs.GroundedRegion()
    out.header = header
    out.query = g.query
    out.found = bool(g.found)
    out.score, out.cosine, out.margin = float(g.prob), float(g.cosine), float(g.margin)
    if result is not None and host is not None and g.region >= 0:
        out.region = region_msg(msgs.Region, result, host, g.region, header)
    else:
        out.region.centroid = Point(x=NAN, y=NAN, z=NAN)
    return out


def grounded_array_msg(msgs, items: List, header):
    out = msgs.GroundedRegionArray()
    out.header = header
    out.results = items
    return out
