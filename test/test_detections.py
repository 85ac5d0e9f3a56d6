"""vision_msgs builders (ros/detections.py). vision_msgs is not on PyPI, so where it is missing the
builders run on stand-in classes with the same fields as vision_msgs 4.x (Jazzy/Kilted); on a
ROS install the real package is used as well."""
import types

import numpy as np
import pytest

from textregion_ros.compose import FrameOutputs, HostTarget
from textregion_ros.ros.detections import detection2d_array, detection3d_array, vision_msgs


def _ns(**fields):
    return lambda: types.SimpleNamespace(**{k: v() for k, v in fields.items()})


def stand_in_vision_msgs():
    vec3 = _ns(x=float, y=float, z=float)
    quat = _ns(x=float, y=float, z=float, w=float)
    pose = _ns(position=vec3, orientation=quat)
    hyp = _ns(hypothesis=_ns(class_id=str, score=float), pose=_ns(pose=pose, covariance=list))
    m = types.SimpleNamespace()
    m.ObjectHypothesisWithPose = hyp
    m.Detection2D = _ns(header=object, results=list, id=str,
                        bbox=_ns(center=_ns(position=_ns(x=float, y=float), theta=float), size_x=float, size_y=float))
    m.Detection2DArray = _ns(header=object, detections=list)
    m.Detection3D = _ns(header=object, results=list, id=str, bbox=_ns(center=pose, size=vec3))
    m.Detection3DArray = _ns(header=object, detections=list)
    return m


MODULES = [pytest.param(stand_in_vision_msgs(), id="stand-in")]
if vision_msgs is not None:
    MODULES.append(pytest.param(vision_msgs, id="vision_msgs"))


def outputs():
    nan = float("nan")
    return FrameOutputs(label=np.array([0, 1, 1]), prob=np.array([0.9, 0.6, 0.4], np.float32),
                        cosine=np.zeros(3, np.float32), boxes=np.array([[10, 20, 50, 60], [0, 0, 0, 0], [5, 5, 9, 7]]),
                        area=np.array([1600, 0, 8]), points=np.array([[0.1, 0.2, 1.5], [nan] * 3, [0, 0, 2.0]]),
                        sizes=np.array([[0.2, 0.1, 0.05], [nan] * 3, [0.01, 0.01, 0.0]]),
                        track_ids=np.array([7, 0, 9], np.uint32))


@pytest.mark.parametrize("vm", MODULES)
def test_every_region_with_a_box_becomes_a_2d_detection(vm):
    arr = detection2d_array(vm, "hdr", ("mug", "wall"), outputs())
    assert arr.header == "hdr" and len(arr.detections) == 2  # the empty mask has no box
    d = arr.detections[0]
    assert (d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y) == (30, 40, 40, 40)
    assert d.results[0].hypothesis.class_id == "mug" and d.results[0].hypothesis.score == pytest.approx(0.9)
    assert d.id == "7" and arr.detections[1].id == "9"


@pytest.mark.parametrize("vm", MODULES)
def test_regions_with_depth_then_the_target_become_3d_detections(vm):
    tgt = HostTarget(np.zeros((5, 3), np.float32), None, np.zeros(3), np.zeros(3), np.ones(3),
                     np.array([0.1, 0.2, 1.5]), np.eye(3), np.array([0.3, 0.2, 0.1]))
    arr = detection3d_array(vm, "hdr", ("mug", "wall"), outputs(), tgt, target_region=0)
    assert len(arr.detections) == 3  # two regions with depth, then the target
    d = arr.detections[0]
    assert (d.bbox.center.position.z, d.bbox.size.x, d.bbox.center.orientation.w) == (1.5, 0.2, 1.0)
    t = arr.detections[-1]
    assert (t.bbox.size.x, t.bbox.size.y, t.bbox.size.z) == pytest.approx((0.3, 0.2, 0.1))
    assert t.bbox.center.orientation.w == pytest.approx(1.0) and t.id == "7"


@pytest.mark.parametrize("vm", MODULES)
def test_3d_detections_follow_the_output_frame(vm):
    """With target_frame, region boxes move with the transform and keep the optical axes, turned."""
    from textregion_ros.geometry.transform import RigidTransform
    q = [-0.5, 0.5, -0.5, 0.5]  # the optical frame in base_link (x forward = optical z, z up = -optical y)
    T = RigidTransform.from_quaternion(q, [0.1, 0.0, 1.0])
    arr = detection3d_array(vm, "base", ("mug", "wall"), outputs(), None, -1, T)
    assert len(arr.detections) == 2
    d = arr.detections[0]
    # By hand: optical (0.1, 0.2, 1.5) is 1.5 + 0.1 forward, 0.1 right (y = -0.1) and 1 - 0.2 up.
    c = d.bbox.center.position
    assert (c.x, c.y, c.z) == pytest.approx((1.6, -0.1, 0.8))
    o = d.bbox.center.orientation
    got = np.array([o.x, o.y, o.z, o.w])
    assert np.allclose(got, q) or np.allclose(got, -np.array(q))
    assert (d.bbox.size.x, d.bbox.size.y, d.bbox.size.z) == pytest.approx((0.2, 0.1, 0.05))  # along the turned axes
