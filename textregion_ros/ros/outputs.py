"""Every output of the node, one row each: the only place an output is declared.

A row gives the topic, message type, writer depth, what it needs composed, whether it is a
full-frame output, the setting that switches it off, the stage that builds it (the publish stage
per frame, or the memory stage from the object memory) and its builder. The publishers, "is anyone
listening", the ComposeRequest and the README's topic table all derive from OUTPUTS. A builder
takes a FrameView (one composed frame) and returns a message, or None when the frame has nothing
true to say on that topic (no found target, no valid depth). Builders never touch DDS, so each is
tested on its own.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, FrozenSet, List, Optional, Tuple

import numpy as np
from geometry_msgs.msg import PointStamped

import textregion_ros.msg as trmsg

from ..compose import ComposeRequest, FrameOutputs
from ..geometry.transform import RigidTransform
from ..results import FRAME_KINDS, FrameResult, Grounding
from . import memory_messages, messages, observation, target3d, viz
from .convert import array_to_image
from .detections import detection2d_array, detection3d_array, vision_msgs
from .output_frame import header_in

RANDOM_BANNER = "RANDOM WEIGHTS: every label, score and grounding here is meaningless"

# What a row can ask compose() for. "depth": 3D per region; "target": the found target's cloud and
# boxes; "transform": a lookup of target_frame at the image stamp.
CROPS, INSTANCE, OVERLAY, DEPTH, TARGET, TRANSFORM = "crops", "instance", "overlay", "depth", "target", "transform"


@dataclass
class FrameView:
    """One composed frame as the builders see it; costly parts are computed once, on first use."""
    result: FrameResult
    out: FrameOutputs
    header: Any  # the image's header
    settings: Any  # NodeSettings in force
    K: Optional[np.ndarray] = None
    resolve: Optional[Callable[[Any], Tuple[str, RigidTransform]]] = None  # OutputFrame.resolve
    marker_lifetime: float = 2.0
    random_weights: bool = False
    active: bool = False  # the query set has an active query (its grounding is the last)
    depth: Optional[np.ndarray] = None  # the matched depth, metres on the host, when a row needs depth
    query: str = ""  # the active query
    encoder: str = ""  # observation.encoder_id of the models that made the tokens

    @property
    def labels(self) -> Tuple[str, ...]:
        return self.result.labels

    @cached_property
    def active_grounding(self) -> Optional[Grounding]:
        g = self.result.groundings
        return g[-1] if self.active and g else None

    @cached_property
    def names(self) -> List[str]:
        """Labels as the overlay and markers show them, with the track id: "mug #12"."""
        names = [self.labels[int(i)] for i in self.out.label]
        if self.out.track_ids is not None:
            names = [f"{n} #{t}" if t else n for n, t in zip(names, self.out.track_ids.tolist())]
        return names

    @cached_property
    def grounded_msgs(self) -> list:
        return [messages.grounded_msg(trmsg, self.labels, self.out, g, self.header, self.settings.publish_masks,
                                      kind=self.result.kind) for g in self.result.groundings]

    @cached_property
    def point(self) -> Optional[PointStamped]:
        """The found target's median point in the camera frame."""
        return messages.grounded_point(self.out, self.active_grounding, self.header)

    @cached_property
    def frame(self) -> Tuple[Any, RigidTransform]:
        """(output header, camera-to-output transform): one lookup for every 3D output of the frame."""
        frame_id, T = self.resolve(self.header) if self.resolve else (self.header.frame_id, RigidTransform.identity())
        return header_in(self.header, frame_id), T

    @cached_property
    def target(self):
        """The target's cloud and boxes in the output frame, or None."""
        return target3d.moved(self.out.target, self.frame[1]) if self.out.target is not None else None


def _regions(v: FrameView):
    tokens = v.result.tokens.float().cpu().numpy() if v.settings.publish_tokens else None
    return messages.region_array_msg(trmsg, v.labels, v.result.num_background, v.out, v.header, tokens,
                                     v.settings.publish_masks, v.result.kind)


def _instance(v: FrameView):
    return array_to_image(v.out.instance, "mono16", v.header)


def _grounded(v: FrameView):
    return v.grounded_msgs[-1] if v.active_grounding is not None else None


def _grounded_all(v: FrameView):
    return messages.grounded_array_msg(trmsg, v.grounded_msgs, v.header, v.result.kind) if v.result.groundings \
        else None


def _grounded_point(v: FrameView):
    if v.point is None:
        return None
    header, T = v.frame
    p = T.points(np.array([[v.point.point.x, v.point.point.y, v.point.point.z]]))[0]
    moved = PointStamped(header=header)
    moved.point.x, moved.point.y, moved.point.z = (float(c) for c in p)
    return moved


def _cloud(v: FrameView):
    return target3d.point_cloud(v.target, v.frame[0]) if v.target is not None else None


def _box(v: FrameView):
    g = v.active_grounding
    if v.target is None:
        return None
    return target3d.grounded_box(trmsg, v.target, v.frame[0], g.query, g.track_id, v.result.kind)


def _pose(v: FrameView):
    return target3d.pose_stamped(v.target, v.frame[0]) if v.target is not None else None


def _overlay(v: FrameView):
    g, out = v.active_grounding, v.out
    img = viz.draw_labels(out.overlay, v.names, out.boxes, out.prob, out.colors,
                          grounded=g.region if g else None, query=g.query if g else "",
                          found=bool(g and g.found), banner=RANDOM_BANNER if v.random_weights else "")
    return array_to_image(img, "rgb8", v.header)


def _markers(v: FrameView):
    """Labels, region boxes and the target's box, in the camera frame like the overlay."""
    out, life, p = v.out, v.marker_lifetime, v.point
    gp = (p.point.x, p.point.y, p.point.z) if p is not None else None
    arr = viz.markers(v.header, v.names, out.points, gp, out.colors, lifetime_s=life)
    arr.markers.extend(viz.box_markers(v.header, out.boxes, out.points, v.K, out.colors, lifetime_s=life))
    if out.target is not None:
        arr.markers.extend(target3d.box_markers(out.target, v.header, lifetime_s=life))
    return arr


def _detections(v: FrameView):
    return detection2d_array(vision_msgs, v.header, v.labels, v.out)


def _detections_3d(v: FrameView):
    g = v.active_grounding
    header, T = v.frame
    return detection3d_array(vision_msgs, header, v.labels, v.out, v.target, g.region if g else -1, T)


@dataclass(frozen=True)
class Output:
    name: str  # topic, relative to the node's namespace
    type_name: str  # package/Message; imported when used, so an absent package (vision_msgs) is no error
    depth: int  # writer history: frame-sized outputs keep one sample (five 4000x4000 RegionArrays are GBs)
    needs: FrozenSet[str]
    build: Callable[[FrameView], Any]
    description: str
    # The kinds of frame (results.FRAME_KINDS) it is published on; on the others a reader keeps the last one.
    kinds: Tuple[str, ...] = FRAME_KINDS
    switch: str = ""  # the NodeSettings bool that turns it off
    # "frame": built by each camera's publish stage from a FrameView; "memory": the memory stage's;
    # "cameras": across cameras (best.py), only with several cameras
    stage: str = "frame"
    every: str = ""  # the NodeSettings knob of seconds between its publications (empty: each frame)

    def enabled(self, settings) -> bool:
        return not self.switch or bool(getattr(settings, self.switch))

    def msg_class(self):
        package, name = self.type_name.split("/")
        return getattr(importlib.import_module(f"{package}.msg"), name)

    def available(self) -> bool:
        try:
            self.msg_class()
            return True
        except ImportError:
            return False


FULL = ("full",)  # every region of the frame: only everything-mode makes them
EVERY_QUERY = ("full", "target")  # every query's grounding: not on a frame that carried only the active target
KIND_NOTES = {FULL: " (full frames only)", EVERY_QUERY: " (not on carried-target frames)"}

OUTPUTS: Tuple[Output, ...] = (
    Output("regions", "textregion_ros/RegionArray", 1, frozenset({CROPS, DEPTH}), _regions,
           "every region: label, score, box, mask crop, 3D centroid and size, track id", kinds=FULL),
    Output("instance_mask", "sensor_msgs/Image", 1, frozenset({INSTANCE}), _instance,
           "mono16 image, region id + 1 per pixel (0 = none)", kinds=FULL, switch="publish_instance_mask"),
    Output("grounded", "textregion_ros/GroundedRegion", 5, frozenset({CROPS, DEPTH}), _grounded,
           "the region that best matches the active query, with its score, margin and found flag"),
    Output("grounded_all", "textregion_ros/GroundedRegionArray", 5, frozenset({CROPS, DEPTH}), _grounded_all,
           "one grounding per standing query, then the active query", kinds=EVERY_QUERY),
    Output("grounded_point", "geometry_msgs/PointStamped", 5, frozenset({DEPTH, TRANSFORM}), _grounded_point,
           "the found target's median 3D point (in target_frame when set)"),
    Output("overlay", "sensor_msgs/Image", 1, frozenset({OVERLAY}), _overlay,
           "rgb8 masks, labels and the target over the image", kinds=FULL, switch="publish_overlay"),
    Output("markers", "visualization_msgs/MarkerArray", 2, frozenset({DEPTH, TARGET}), _markers,
           "RViz labels, region boxes and the target's box, in the camera frame", kinds=FULL,
           switch="publish_markers"),
    Output("grounded_cloud", "sensor_msgs/PointCloud2", 1, frozenset({DEPTH, TARGET, TRANSFORM}), _cloud,
           "the found target's cleaned points, xyz + rgb"),
    Output("grounded_box", "textregion_ros/GroundedBox", 5, frozenset({DEPTH, TARGET, TRANSFORM}), _box,
           "the found target's oriented and axis-aligned boxes"),
    Output("grounded_pose", "geometry_msgs/PoseStamped", 5, frozenset({DEPTH, TARGET, TRANSFORM}), _pose,
           "the found target's pose (centroid, box axes)"),
    Output("detections", "vision_msgs/Detection2DArray", 2, frozenset(), _detections,
           "vision_msgs 2D detections (when vision_msgs is installed)", kinds=FULL,
           switch="publish_detections"),
    Output("detections_3d", "vision_msgs/Detection3DArray", 2, frozenset({DEPTH, TARGET, TRANSFORM}),
           _detections_3d, "vision_msgs 3D detections (when vision_msgs is installed)", kinds=FULL,
           switch="publish_detections"),
    Output("observation", "textregion_ros/Observation", 5, frozenset({INSTANCE, DEPTH}),
           lambda v: observation.observation_msg(v, v.encoder),
           "each full frame's non-background regions (token, label, box, a bounded sample of their depth points) "
           "for the object memory node, textregion_memory", kinds=FULL),
    Output("grounded_best", "textregion_ros/GroundedRegion", 5, frozenset(), lambda v: v.best.grounded,
           "with several cameras: the best grounding of the active query over every camera, in its camera's "
           "frame (header.frame_id says which)", stage="cameras"),
    Output("grounded_best_point", "geometry_msgs/PointStamped", 5, frozenset(),
           lambda v: v.best.point if v.best.grounded.found else None,
           "with several cameras: grounded_best's 3D point (in target_frame when set)", stage="cameras"),
    Output("memory/objects", "textregion_ros/MemoryObjectArray", 1, frozenset(),
           lambda v: memory_messages.objects_msg(trmsg, v), "every remembered object, in memory_frame",
           switch="memory", stage="memory", every="memory_publish_every"),
    Output("memory/markers", "visualization_msgs/MarkerArray", 1, frozenset(), memory_messages.markers,
           "remembered objects' boxes and labels for RViz", switch="memory", stage="memory",
           every="memory_publish_every"),
    Output("memory/cloud", "sensor_msgs/PointCloud2", 1, frozenset(), memory_messages.cloud,
           "remembered objects' points, coloured by object", switch="memory", stage="memory",
           every="memory_publish_every"),
    Output("memory/grounded", "geometry_msgs/PoseStamped", 1, frozenset(), memory_messages.grounded,
           "the active query's remembered object in memory_frame, also out of view", switch="memory",
           stage="memory"),
)
FRAME_OUTPUTS = tuple(r for r in OUTPUTS if r.stage == "frame")
MEMORY_OUTPUTS = tuple(r for r in OUTPUTS if r.stage == "memory")
BEST_OUTPUTS = tuple(r for r in OUTPUTS if r.stage == "cameras")


def listening(row: Output, publishers, settings) -> bool:
    """Is the row switched on, published and read: the stages build only these."""
    pub = publishers.get(row.name)
    return pub is not None and row.enabled(settings) and pub.get_subscription_count() > 0


def compose_request(rows, view_needs_target: bool, depth, K, settings, grounded: int,
                    extra: FrozenSet[str] = frozenset()) -> ComposeRequest:
    """What to compute for the outputs someone reads: the union of their needs and ``extra`` (a service
    reply's 3D, the object memory's instance map and depth)."""
    needs = frozenset(extra).union(*(r.needs for r in rows))
    return ComposeRequest(instance=INSTANCE in needs, crops=CROPS in needs and settings.publish_masks,
                          overlay=OVERLAY in needs,
                          depth=depth if DEPTH in needs else None, K=K, depth_stride=settings.depth_stride,
                          alpha=settings.overlay_alpha, grounded=grounded,
                          target=view_needs_target and TARGET in needs, max_points=settings.max_cloud_points)


def needs_depth(rows, extra: FrozenSet[str] = frozenset()) -> bool:
    return DEPTH in extra or any(DEPTH in r.needs for r in rows)


def topic_table() -> str:
    """The README's output table (test_outputs checks the README holds it), with the node that publishes each."""
    lines = ["| topic | type | node | what |", "|---|---|---|---|"]
    for r in OUTPUTS:
        every = f" (at most every `{r.every}` seconds)" if r.every else ""
        node = "textregion_memory" if r.stage == "memory" else "textregion"
        lines.append(f"| `{r.name}` | {r.type_name} | {node} | {r.description}{KIND_NOTES.get(r.kinds, '')}{every} |")
    return "\n".join(lines)
