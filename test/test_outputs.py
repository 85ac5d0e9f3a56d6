"""The outputs table and each builder, without DDS: a ray-cast box scene with known geometry,
its true silhouette as region 0 and the wall as region 1, composed by compose()."""
import math
import os

import numpy as np
import pytest
import torch

from rgbd_shapes import box_scene
from textregion_ros.classify import Classification
from textregion_ros.compose import compose
from textregion_ros.geometry.transform import RigidTransform
from textregion_ros.masks.base import MaskSet
from textregion_ros.results import FrameResult, groundings_from
from textregion_ros.ros import outputs
from textregion_ros.ros.outputs import OUTPUTS, FrameView, compose_request
from textregion_ros.ros.settings import NodeSettings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Header:
    def __init__(self, frame_id="cam"):
        from builtin_interfaces.msg import Time
        self.stamp, self.frame_id = Time(sec=7, nanosec=5), frame_id


def frame_result(scene, found=True, queries=("red box",)):
    masks = torch.from_numpy(np.stack([scene.mask, ~scene.mask])).float()
    cls = Classification(label=torch.tensor([0, 1]), prob=torch.tensor([0.9, 0.8]), cosine=torch.tensor([0.3, 0.2]),
                         cosines=torch.zeros(2, 2))
    g = tuple(torch.tensor([v]) for v in (0, 0.95 if found else 0.2, 0.3, 0.5, float(found)))
    return FrameResult(frame_hw=scene.mask.shape, masks=MaskSet(masks, torch.tensor([1.0, 0.5]), scene.mask.shape),
                       tokens=torch.zeros(2, 4), classes=cls, labels=("box", "wall"), num_background=1,
                       queries=tuple(queries), groundings=groundings_from(queries, g))


def view(scene, rows=OUTPUTS, found=True, resolve=None, queries=("red box",), settings=None):
    result = frame_result(scene, found, queries)
    settings = settings or NodeSettings()
    g = result.groundings[-1] if result.groundings else None
    depth = torch.from_numpy(np.nan_to_num(scene.depth_m, nan=0.0))
    req = compose_request(rows, bool(g and g.found), depth, scene.K, settings, g.region if g else -1)
    image = torch.from_numpy(scene.rgb)
    v = FrameView(result, compose(result, image, req), Header(), settings, scene.K, resolve, 1.5,
                  active=bool(queries))
    return v


@pytest.fixture(scope="module")
def scene():
    return box_scene(holes=0.0, bleed=0)


def test_each_row_is_complete_and_names_are_unique():
    names = [r.name for r in OUTPUTS]
    assert len(set(names)) == len(names)
    fields = set(NodeSettings.__dataclass_fields__)
    for r in OUTPUTS:
        assert r.description and r.depth >= 1 and "/" in r.type_name
        assert not r.switch or r.switch in fields, r.switch
        assert r.needs <= {outputs.CROPS, outputs.INSTANCE, outputs.OVERLAY, outputs.DEPTH, outputs.TARGET,
                           outputs.TRANSFORM}
        if r.name.startswith("detections"):
            continue
        assert r.available(), r.name


def test_compose_request_is_the_union_of_what_readers_need(scene):
    by = {r.name: r for r in OUTPUTS}
    s = NodeSettings()
    d = torch.zeros(4, 4)
    req = compose_request([by["instance_mask"]], True, d, scene.K, s, 0)
    assert req.instance and not req.crops and not req.overlay and req.depth is None and not req.target
    req = compose_request([by["grounded_cloud"], by["overlay"]], True, d, scene.K, s, 0)
    assert req.target and req.depth is d and req.overlay and not req.instance
    assert not compose_request([by["grounded_cloud"]], False, d, scene.K, s, 0).target  # no found target
    assert compose_request([], True, d, scene.K, s, 0).depth is None


def build(v, name):
    return {r.name: r for r in OUTPUTS}[name].build(v)


def test_regions_instance_and_overlay(scene):
    v = view(scene)
    regions = build(v, "regions")
    assert [r.label for r in regions.regions] == ["box", "wall"] and regions.num_background == 1
    r0 = regions.regions[0]
    ys, xs = np.nonzero(scene.mask)
    assert (r0.bbox.x_offset, r0.bbox.y_offset) == (xs.min(), ys.min())
    assert (r0.bbox.width, r0.bbox.height) == (xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min())
    assert r0.area == int(scene.mask.sum())
    # The 3D centroid lies on the box: within the box's half-diagonal of its true centre.
    c = np.array([r0.centroid.x, r0.centroid.y, r0.centroid.z])
    assert np.linalg.norm(c - scene.centre) < np.linalg.norm(scene.size) / 2
    inst = build(v, "instance_mask")
    ids = np.frombuffer(bytes(inst.data), np.uint16).reshape(inst.height, inst.width)
    assert np.array_equal(ids == 1, scene.mask) and np.array_equal(ids == 2, ~scene.mask)
    overlay = build(v, "overlay")
    assert (overlay.encoding, overlay.height, overlay.width) == ("rgb8",) + scene.mask.shape


def test_grounded_outputs_follow_the_found_target(scene):
    v = view(scene)
    g = build(v, "grounded")
    assert g.query == "red box" and g.found and g.region.id == 0 and g.region.label == "box"
    assert [x.query for x in build(v, "grounded_all").results] == ["red box"]
    p = build(v, "grounded_point")
    assert p.header.frame_id == "cam" and (p.header.stamp.sec, p.header.stamp.nanosec) == (7, 5)
    assert math.isclose(p.point.z, v.out.points[0][2], rel_tol=1e-6)
    cloud, box, pose = (build(v, n) for n in ("grounded_cloud", "grounded_box", "grounded_pose"))
    pts = np.frombuffer(bytes(cloud.data), np.float32).reshape(-1, 4)[:, :3]
    assert len(pts) == box.num_points > 100
    assert np.abs(scene.surface_distance(pts.astype(np.float64))).max() < 0.01  # on the true surface
    assert (pose.pose.position.x, pose.pose.position.y, pose.pose.position.z) == (
        box.pose.position.x, box.pose.position.y, box.pose.position.z)
    # Not found: no point, cloud, box or pose; grounded still says "not found".
    nf = view(scene, found=False)
    assert all(build(nf, n) is None for n in ("grounded_point", "grounded_cloud", "grounded_box", "grounded_pose"))
    assert build(nf, "grounded").found is False
    # No active query: nothing grounded at all.
    nq = view(scene, queries=())
    assert build(nq, "grounded") is None and build(nq, "grounded_all") is None


def test_3d_outputs_move_by_one_lookup_into_the_target_frame(scene):
    """By hand: the optical frame in base_link, x forward = optical z, y left = -optical x, z up = -optical y."""
    T = RigidTransform.from_quaternion([-0.5, 0.5, -0.5, 0.5], [0.1, 0.0, 1.0])
    calls = []

    def resolve(header):
        calls.append(header.frame_id)
        return "base_link", T

    cam, base = view(scene), view(scene, resolve=resolve)
    pc, pb = build(cam, "grounded_point").point, build(base, "grounded_point").point
    assert np.allclose([pb.x, pb.y, pb.z], [pc.z + 0.1, -pc.x, 1.0 - pc.y], atol=1e-6)
    for n in ("grounded_cloud", "grounded_box", "grounded_pose"):
        assert build(base, n).header.frame_id == "base_link"
    assert calls == ["cam"]  # every 3D output of the frame shares one lookup


def test_markers_use_the_views_lifetime(scene):
    arr = build(view(scene), "markers")
    assert arr.markers and all(m.header.frame_id == "cam" for m in arr.markers)
    added = [m for m in arr.markers if m.action == m.ADD]  # a DELETEALL first clears the last frame's
    assert added and {m.lifetime.sec + m.lifetime.nanosec * 1e-9 for m in added} == {1.5}


def test_detections_when_vision_msgs_is_installed(scene):
    if outputs.vision_msgs is None:
        pytest.skip("vision_msgs is not on PyPI; its builders are tested on stand-ins in test_detections.py")
    v = view(scene)
    assert len(build(v, "detections").detections) == 2


def test_readme_topic_table_is_the_outputs_table():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert outputs.topic_table() in readme, "README's topic table: paste outputs.topic_table()"


def test_publish_masks_false_leaves_masks_out_and_crops_uncomposed(scene):
    s = NodeSettings(publish_masks=False)
    v = view(scene, settings=s)
    assert v.out.crop_data is None  # not composed at all
    regions, g = build(v, "regions"), build(v, "grounded")
    assert all(len(r.mask.data) == 0 for r in regions.regions) and len(g.region.mask.data) == 0
    assert regions.regions[0].area == int(scene.mask.sum())  # boxes, areas and 3D stay
    assert len(build(view(scene), "regions").regions[0].mask.data) > 0
