"""Messages built by copying a per-frame prototype (ros/prototype.py) keep each frame's own values: a copy
shares its prototype's nested messages, so a field filled in place instead of replaced would leak into every
other region or marker, and into the previous frame's messages still queued for publishing."""
import numpy as np
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

import textregion_ros.msg as trmsg
from textregion_ros.compose import FrameOutputs
from textregion_ros.ros import viz
from textregion_ros.ros.messages import region_array_msg


def frame(seed: int, n: int = 6) -> FrameOutputs:
    rng = np.random.default_rng(seed)
    boxes, crops, start, at = [], [], [], 0
    for _ in range(n):
        x0, y0 = rng.integers(0, 300, 2)
        w, h = rng.integers(2, 40, 2)
        boxes.append([x0, y0, x0 + w, y0 + h])
        crop = (rng.random((h, w)) > 0.5).astype(np.uint8)
        crops.append(crop.ravel())
        start.append(at)
        at += crop.size
    points = rng.uniform(0.2, 3.0, (n, 3)).astype(np.float32)
    points[1] = np.nan  # a region without depth
    return FrameOutputs(label=rng.integers(0, 3, n), prob=rng.random(n).astype(np.float32),
                        cosine=rng.random(n).astype(np.float32), boxes=np.array(boxes, np.int64),
                        area=rng.integers(1, 900, n), points=points, sizes=rng.random((n, 3)).astype(np.float32),
                        crop_data=np.concatenate(crops), crop_start=np.array(start),
                        colors=rng.integers(0, 256, (n, 3)).astype(np.uint8), track_ids=np.arange(n, dtype=np.uint32))


def header(sec: int) -> Header:
    return Header(stamp=Time(sec=sec), frame_id=f"camera{sec}")


def check_regions(msg, out: FrameOutputs, sec: int) -> None:
    assert len(msg.regions) == len(out)
    for i, r in enumerate(msg.regions):
        x0, y0, x1, y1 = (int(v) for v in out.boxes[i])
        assert (r.id, r.track_id, r.label_index) == (i, int(out.track_ids[i]), int(out.label[i]))
        assert (r.bbox.x_offset, r.bbox.y_offset, r.bbox.width, r.bbox.height) == (x0, y0, x1 - x0, y1 - y0)
        assert r.mask.header.stamp.sec == sec and r.mask.encoding == "mono8"
        assert (r.mask.height, r.mask.width, r.mask.step) == (y1 - y0, x1 - x0, x1 - x0)
        assert bytes(r.mask.data) == (out.crop(i) * 255).astype(np.uint8).tobytes()
        want = out.points[i]
        got = np.array([r.centroid.x, r.centroid.y, r.centroid.z])
        assert np.array_equal(np.isnan(got), np.isnan(want)) and np.allclose(got[~np.isnan(got)], want[~np.isnan(want)])


def test_regions_of_two_frames_keep_their_own_values_and_headers():
    a, b = frame(0), frame(1)
    labels = ["mug", "plate", "background"]
    msg_a = region_array_msg(trmsg, labels, 1, a, header(1))
    msg_b = region_array_msg(trmsg, labels, 1, b, header(2))
    check_regions(msg_a, a, 1)  # after the second frame was built
    check_regions(msg_b, b, 2)
    assert len({id(r.bbox) for r in msg_a.regions + msg_b.regions}) == 2 * len(a)


def test_markers_of_two_frames_keep_their_own_values():
    a, b = frame(0), frame(1)
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    names = [f"r{i}" for i in range(len(a))]
    arr_a = viz.markers(header(1), names, a.points, a.points[0], a.colors, lifetime_s=0.7)
    boxes_a = viz.box_markers(header(1), a.boxes, a.points, K, a.colors, lifetime_s=0.7)
    viz.markers(header(2), names, b.points, b.points[0], b.colors, lifetime_s=2.5)
    viz.box_markers(header(2), b.boxes, b.points, K, b.colors, lifetime_s=2.5)
    labels = [m for m in arr_a.markers if m.ns == "textregion/labels"]
    assert [m.id for m in labels] == [0, 2, 3, 4, 5]  # region 1 has no depth
    for m in labels:
        p = a.points[m.id]
        assert m.header.stamp.sec == 1 and m.text == names[m.id] and m.lifetime.nanosec == 700_000_000
        assert np.allclose([m.pose.position.x, m.pose.position.y, m.pose.position.z], p)
        assert np.allclose([m.color.r, m.color.g, m.color.b], a.colors[m.id] / 255.0)
    for m in boxes_a:
        x0, y0 = (float(v) for v in a.boxes[m.id][:2])
        z = float(a.points[m.id][2])
        assert m.header.stamp.sec == 1 and len(m.points) == 5
        assert np.isclose(m.points[0].x, (x0 - 320) * z / 500) and np.isclose(m.points[0].y, (y0 - 240) * z / 500)


def test_region_masks_follow_the_mask_switch_and_the_grounded_region_keeps_its_own_crop():
    """The masks of a frame are scaled once and sliced per region (RegionColumns): a region with an empty box has
    no mask, the switch leaves every mask empty, and a grounded region's mask is its own crop."""
    from textregion_ros.ros.messages import grounded_msg
    from textregion_ros.results import Grounding

    out = frame(2)
    out.boxes[3] = 0  # an empty mask: compose() gives it a zero box and no crop bytes
    sizes = [(b[3] - b[1]) * (b[2] - b[0]) for b in out.boxes.tolist()]
    out.crop_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out.crop_data = np.concatenate([(np.arange(s) % 2).astype(np.uint8) for s in sizes])
    labels = ["mug", "plate", "background"]
    with_masks = region_array_msg(trmsg, labels, 1, out, header(3))
    assert len(with_masks.regions[3].mask.data) == 0 and with_masks.regions[3].bbox.width == 0
    for i in (0, 1, 2, 4, 5):
        want = np.arange(sizes[i]) % 2 * 255
        assert bytes(with_masks.regions[i].mask.data) == want.astype(np.uint8).tobytes()
    without = region_array_msg(trmsg, labels, 1, out, header(3), with_mask=False)
    assert all(len(r.mask.data) == 0 for r in without.regions)
    assert [r.score for r in without.regions] == [float(p) for p in out.prob]
    g = Grounding(query="mug", region=4, prob=0.9, cosine=0.3, margin=0.1, found=True)
    msg = grounded_msg(trmsg, labels, out, g, header(3))
    assert msg.region.id == 4 and bytes(msg.region.mask.data) == bytes(with_masks.regions[4].mask.data)
    own = np.ones((2, 3), np.uint8)
    assert bytes(grounded_msg(trmsg, labels, out, g, header(3), crop=own).region.mask.data) == b"\xff" * 6
    assert len(grounded_msg(trmsg, labels, out, g, header(3), with_mask=False).region.mask.data) == 0


def test_a_copied_message_has_every_field_of_its_prototype_and_its_own_identity():
    from textregion_ros.ros.prototype import like
    from visualization_msgs.msg import Marker

    m = Marker(ns="a", id=7, text="mug", type=Marker.TEXT_VIEW_FACING)
    c = like(m)
    assert c == m and c is not m and c.text == "mug" and c.id == 7
    c.id = 8
    assert m.id == 7
