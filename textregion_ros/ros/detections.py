"""vision_msgs output, for ROS tools that expect the standard detection messages.

vision_msgs is not on PyPI, so it is imported where a ROS install has it and the node publishes
``detections`` (Detection2DArray: every region) and ``detections_3d`` (Detection3DArray: every
region with depth, then the grounded target's oriented box) only then. The builders take the
message module as an argument, so they are tested with stand-in classes where it is missing.
Each detection carries one hypothesis (the region's label and its probability) and ``id`` = the
track id ("" while unconfirmed). Frames: ``detections`` in the image's optical frame (pixels);
``detections_3d`` in the frame the caller moved them to (``target_frame``, as the grounded outputs):
a region's axis-aligned box keeps its optical-frame axes, so it turns with the transform.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..compose import FrameOutputs, HostTarget
from ..geometry.transform import RigidTransform, quaternion_xyzw

try:  # a real ROS install
    import vision_msgs.msg as vision_msgs
except ImportError:  # the PyPI wheels
    vision_msgs = None


def _hypothesis(vm, label: str, score: float):
    h = vm.ObjectHypothesisWithPose()
    h.hypothesis.class_id = label
    h.hypothesis.score = float(score)
    return h


def _id(out: FrameOutputs, i: int) -> str:
    return str(int(out.track_ids[i])) if out.track_ids is not None and out.track_ids[i] else ""


def detection2d_array(vm, header, labels: Sequence[str], out: FrameOutputs):
    arr = vm.Detection2DArray()
    arr.header = header
    for i in range(len(out)):
        x0, y0, x1, y1 = (float(v) for v in out.boxes[i])
        if x1 <= x0 or y1 <= y0:
            continue
        d = vm.Detection2D()
        d.header = header
        d.bbox.center.position.x, d.bbox.center.position.y = (x0 + x1) / 2, (y0 + y1) / 2
        d.bbox.center.theta = 0.0
        d.bbox.size_x, d.bbox.size_y = x1 - x0, y1 - y0
        d.results = [_hypothesis(vm, labels[int(out.label[i])], out.prob[i])]
        d.id = _id(out, i)
        arr.detections.append(d)
    return arr


def detection3d_array(vm, header, labels: Sequence[str], out: FrameOutputs, target: Optional[HostTarget] = None,
                      target_region: int = -1, T: Optional[RigidTransform] = None):
    """``target`` is already in ``header``'s frame (target3d.moved); region points are optical, moved by ``T``."""
    arr = vm.Detection3DArray()
    arr.header = header
    if out.points is not None and out.sizes is not None:
        T = T or RigidTransform.identity()
        centres = T.points(np.asarray(out.points, np.float64).reshape(-1, 3))
        q = quaternion_xyzw(T.R)  # the optical axes in the output frame
        for i in range(len(out)):
            p, s = centres[i], out.sizes[i]
            if not (np.all(np.isfinite(p)) and np.all(np.isfinite(s))):
                continue
            d = vm.Detection3D()
            d.header = header
            d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z = (float(v) for v in p)
            o = d.bbox.center.orientation
            o.x, o.y, o.z, o.w = (float(v) for v in q)
            d.bbox.size.x, d.bbox.size.y, d.bbox.size.z = (float(v) for v in s)
            d.results = [_hypothesis(vm, labels[int(out.label[i])], out.prob[i])]
            d.id = _id(out, i)
            arr.detections.append(d)
    if target is not None and 0 <= target_region < len(out):
        d = vm.Detection3D()
        d.header = header
        c = d.bbox.center
        c.position.x, c.position.y, c.position.z = (float(v) for v in target.obb_centre)
        c.orientation.x, c.orientation.y, c.orientation.z, c.orientation.w = (float(v) for v in
                                                                              quaternion_xyzw(target.obb_axes))
        d.bbox.size.x, d.bbox.size.y, d.bbox.size.z = (float(v) for v in target.obb_size)
        d.results = [_hypothesis(vm, labels[int(out.label[target_region])], out.prob[target_region])]
        d.id = _id(out, target_region)
        arr.detections.append(d)
    return arr
