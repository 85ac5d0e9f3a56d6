"""The textregion node: a thin adapter between ROS topics and the core Pipeline.

Threads, each with one job:
* the executor runs subscriptions, the query topic, parameters, the ``ground`` service and
  diagnostics; callbacks only validate, count and hand over;
* the inference stage takes the newest frame (one overwritten slot, never a queue) with its
  depth matched at that moment and one snapshot of the queries, and runs the pipeline;
* the publish stage composes frame t on the device and publishes it while frame t+1 is inferred
  (a one-frame hand-over: a newer result replaces one not yet published);
* the text stage embeds new vocabularies and standing queries, then swaps them in, so a
  1000-label vocabulary never stalls frames.
Anything a client sends is validated where it arrives; what cannot be used is counted under
``bad_input/<reason>`` with a throttled log line, and nothing is published from it.
"""
from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np
import rclpy
import torch
from collections import deque
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped, PoseStamped
from rcl_interfaces.msg import ParameterType, SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from rclpy.event_handler import SubscriptionEventCallbacks
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

import textregion_ros.msg as trmsg
import textregion_ros.srv as trsrv

from ..compose import ComposeRequest, FrameOutputs, compose, region_crop
from ..encoders.text import LabelEmbeddings
from ..encoders.weights import WeightsUnavailableError
from ..hub import prefer_cache_when_offline
from ..labels import LabelError, normalize_query
from ..pipeline import Pipeline
from ..results import FrameResult, Grounding
from ..targeting import TargetLocks
from ..tracking import Tracker
from . import messages, target3d, viz
from .detections import detection2d_array, detection3d_array, vision_msgs
from .frames import OutputFrame, header_in
from .convert import (ImageError, array_to_image, check_frame_header, depth_to_meters, frame_to_rgb8,
                      stamp_ns)
from .diagnostics import Stats
from .params import (RUNTIME_KNOBS, NodeSettings, descriptor, effective_defaults, node_settings,
                     pipeline_config, tracker_config)

RANDOM_BANNER = "RANDOM WEIGHTS: every label, score and grounding here is meaningless"
ARRAY_PARAMS = ("vocabulary", "background", "queries")
SERVICE_QUEUE = 1000  # ground requests held while earlier ones are answered


# After frames this large, hand freed heap back to the OS: glibc keeps freed arena memory otherwise,
# and one 4000x4000 frame would leave the process hundreds of MB larger for good.
TRIM_PIXELS = 4_000_000


def release_free_memory() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class StartupError(RuntimeError):
    pass


@dataclass(frozen=True)
class QuerySet:
    """Standing queries then the active one, with their embeddings: swapped as one object."""
    standing: Tuple[str, ...]
    active: str
    embeddings: LabelEmbeddings

    @property
    def texts(self) -> Tuple[str, ...]:
        return self.standing + ((self.active,) if self.active else ())


@dataclass
class Frame:
    """What the inference stage takes: the image, its depth matched at hand-over, the queries."""
    msg: Any
    seq: int
    newest: int
    depth: Optional[Image]
    K: Optional[np.ndarray]
    queries: QuerySet


@dataclass
class Processed:
    result: FrameResult
    image: torch.Tensor  # (H, W, 3) uint8 on the device
    header: Any
    depth: Optional[Image]
    K: Optional[np.ndarray]
    queries: QuerySet
    stamp_ns: int
    partial: bool = False  # only the active query's target, carried by SAM2 (target_tracking sam2)


def valid_K(msg: CameraInfo) -> Optional[np.ndarray]:
    K = np.array(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        return None
    return K


class TextRegionNode(Node):
    def __init__(self, pipeline: Optional[Pipeline] = None, **kwargs):
        super().__init__("textregion", **kwargs)
        self.stats = Stats()
        try:
            preset_name = self.declare_parameter("preset", "realtime", descriptor("preset", "realtime")).value
            defaults = effective_defaults(preset_name)
            values: Dict[str, Any] = {"preset": preset_name}
            for name, value in defaults.items():
                if name == "preset":
                    continue
                d = descriptor(name, value)
                if name in ARRAY_PARAMS:
                    d.type = ParameterType.PARAMETER_STRING_ARRAY
                    d.dynamic_typing = True  # an empty list arrives typed as a byte array; we check elements
                values[name] = self.declare_parameter(name, value, d).value
            values = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in values.items()}
            for name in ARRAY_PARAMS:
                if not all(isinstance(x, str) for x in values[name]):
                    raise ValueError(f"{name} must be a list of strings")
            self.config = pipeline_config(values)
            self.settings: NodeSettings = node_settings(values)
        except (ValueError, TypeError, rclpy.exceptions.ParameterException) as exc:
            raise StartupError(f"bad parameters: {exc}") from exc
        if pipeline is None:
            if not self.config.random_weights and not prefer_cache_when_offline():
                self.get_logger().info("the model hub is not reachable: loading weights from the local cache only")
            self.get_logger().info(f"loading models: {self.config.encoder_model} ({self.config.encoder_weights}), "
                                   f"SAM2 {self.config.sam2_model}, preset {preset_name}")
            try:
                pipeline = Pipeline(self.config)
            except (WeightsUnavailableError, ValueError, RuntimeError) as exc:
                raise StartupError(str(exc)) from exc
        self.pipeline = pipeline
        if self.config.random_weights:
            self.get_logger().warning(RANDOM_BANNER + " (random_weights:=true is for tests and benchmarks)")
        self._lock = threading.Condition()
        self._pending: Optional[Tuple[Any, int]] = None
        self._received_seq = 0
        self.busy = False  # the inference stage is inside a frame
        self._updates: Dict[str, Any] = {}
        self._config_lock = threading.Lock()
        self._handover = threading.Condition()
        self._to_publish: Optional[Processed] = None
        self._last: Optional[Tuple[Processed, FrameOutputs]] = None
        self.frame_log: Deque[Tuple[int, int]] = deque(maxlen=10000)  # (processed seq, newest seq at start)
        self._depth: Deque[Tuple[int, Image]] = deque(maxlen=30)
        self._K: Optional[np.ndarray] = None
        self._warned_qos = False
        self._frame_period = deque(maxlen=20)
        self.tracker = Tracker(tracker_config(self.settings))
        self.locks = TargetLocks(self.settings.lock_margin, self.settings.lock_frames)
        self._since_full = 0  # frames carried by SAM2 since the last full frame
        self._queries = QuerySet(self.settings.queries, "", self.pipeline.embed_queries(self.settings.queries))
        self._query_lock = threading.Lock()
        self._text_jobs: Dict[str, Any] = {}
        self._text_cv = threading.Condition()
        self.text_busy = False
        self._create_interfaces()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._running = True
        self._threads = [threading.Thread(target=fn, name=name, daemon=True) for fn, name in (
            (self._inference_loop, "textregion-inference"), (self._publish_loop, "textregion-publish"),
            (self._text_loop, "textregion-text"))]
        for t in self._threads:
            t.start()
        self.get_logger().info("ready: publish queries on 'query' (std_msgs/String)")

    @property
    def active_query(self) -> str:
        return self._queries.active

    # --- interfaces -------------------------------------------------------
    def _create_interfaces(self) -> None:
        s = self.settings
        group = ReentrantCallbackGroup()
        # Sensor-data QoS (best effort, keep last 5). A deeper reader queue was measured: on a saturated
        # 2-core machine it made rclpy deserialize every 1 MB frame and cut the processed rate by 3x.
        if s.image_qos == "sensor_data":
            cam_qos = qos_profile_sensor_data
        else:
            cam_qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        if s.compressed:
            self.create_subscription(CompressedImage, "image/compressed", self._on_image, cam_qos,
                                     callback_group=group, event_callbacks=events)
        else:
            self.create_subscription(Image, "image", self._on_image, cam_qos, callback_group=group,
                                     event_callbacks=events)
        self.create_subscription(Image, "depth", self._on_depth, cam_qos, callback_group=group,
                                 event_callbacks=events)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, cam_qos, callback_group=group,
                                 event_callbacks=events)
        query_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.VOLATILE)
        self.create_subscription(String, "query", self._on_query, query_qos, callback_group=group)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_active = self.create_publisher(String, "active_query", latched)
        # Frame-sized outputs keep one sample in the writer's history: a reliable KEEP_LAST 5 would hold
        # five RegionArrays of a 4000x4000 camera (hundreds of MB) for no reader's benefit.
        self.pub_regions = self.create_publisher(trmsg.RegionArray, "regions", 1)
        self.pub_instance = self.create_publisher(Image, "instance_mask", 1)
        self.pub_grounded = self.create_publisher(trmsg.GroundedRegion, "grounded", 5)
        self.pub_grounded_all = self.create_publisher(trmsg.GroundedRegionArray, "grounded_all", 5)
        self.pub_point = self.create_publisher(PointStamped, "grounded_point", 5)
        self.pub_overlay = self.create_publisher(Image, "overlay", 1)
        self.pub_markers = self.create_publisher(MarkerArray, "markers", 2)
        self.pub_cloud = self.create_publisher(PointCloud2, "grounded_cloud", 1)
        self.pub_box = self.create_publisher(trmsg.GroundedBox, "grounded_box", 5)
        self.pub_pose = self.create_publisher(PoseStamped, "grounded_pose", 5)
        self.pub_det2d = self.pub_det3d = None
        if vision_msgs is not None and s.publish_detections:
            self.pub_det2d = self.create_publisher(vision_msgs.Detection2DArray, "detections", 2)
            self.pub_det3d = self.create_publisher(vision_msgs.Detection3DArray, "detections_3d", 2)
        elif s.publish_detections:
            self.get_logger().info("vision_msgs is not installed: detections and detections_3d are not published")
        self.frames = OutputFrame(self, s.target_frame, s.tf_timeout, self.stats)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # KEEP_ALL: a burst of concurrent calls is queued and every caller gets an answer.
        service_qos = QoSProfile(history=HistoryPolicy.KEEP_ALL, depth=SERVICE_QUEUE,
                                 reliability=ReliabilityPolicy.RELIABLE)
        self.create_service(trsrv.Ground, "ground", self._on_ground, qos_profile=service_qos, callback_group=group)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=group)
        self.pub_active.publish(String(data=""))

    def _outputs_wanted(self) -> bool:
        return any(p is not None and p.get_subscription_count() > 0 for p in (
            self.pub_regions, self.pub_instance, self.pub_grounded, self.pub_grounded_all, self.pub_point,
            self.pub_overlay, self.pub_markers, self.pub_cloud, self.pub_box, self.pub_pose, self.pub_det2d,
            self.pub_det3d))

    def _on_incompatible_qos(self, event) -> None:
        self.stats.count("qos/incompatible")
        if not self._warned_qos:
            self._warned_qos = True
            self.get_logger().warning(
                f"a publisher's QoS is incompatible with this subscription (policy {event.last_policy_kind}); "
                f"camera inputs use image_qos={self.settings.image_qos!r}: set image_qos:=reliable or make the "
                f"publisher best-effort")

    def _bad_input(self, reason: str, detail: str, what: str = "frame") -> None:
        self.stats.count(f"bad_input/{reason}")
        self.get_logger().warning(f"skipping {what}: {detail}", throttle_duration_sec=5.0)

    # --- inputs -----------------------------------------------------------
    def _on_image(self, msg) -> None:
        self.stats.on_received()
        try:
            t_ns = stamp_ns(msg.header.stamp)
            check_frame_header(msg)
        except ImageError as exc:
            self._bad_input(exc.reason, str(exc))
            return
        ahead = t_ns - self._now_ns()
        if self.settings.max_future > 0 and ahead > self.settings.max_future * 1e9:
            self._bad_input("future_stamp", f"stamped {ahead * 1e-9:.1f} s ahead of this node's clock "
                                            f"(max_future {self.settings.max_future} s)")
            return
        with self._lock:
            self._received_seq += 1
            if self._pending is not None:
                self.stats.count("dropped_stale")
            self._pending = (msg, self._received_seq)
            self._lock.notify()

    def _on_depth(self, msg: Image) -> None:
        try:
            t = stamp_ns(msg.header.stamp)
        except ImageError as exc:
            self._bad_input(f"depth_{exc.reason}", str(exc), "depth")
            return
        self._depth.append((t, msg))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        K = valid_K(msg)
        if K is None:
            self._bad_input("camera_info", f"K must be finite with fx, fy > 0, got {list(msg.k)}", "camera_info")
            return
        self._K = K

    def _on_query(self, msg: String) -> None:
        try:
            text = normalize_query(msg.data)
        except LabelError as exc:
            self._bad_input("query", f"{exc}; keeping {self._queries.active!r}", "query")
            return
        self._set_queries(active=text)
        self.pub_active.publish(String(data=text))
        self.get_logger().info(f"active query: {text!r}" if text else "query cleared")

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Validate everything first; apply only when the whole set is valid."""
        updates, settings, text = {}, {}, {}
        try:
            for p in params:
                value = p.value
                if p.name in ARRAY_PARAMS:
                    if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
                        raise ValueError(f"{p.name} must be a list of strings")
                    value = tuple(value)
                if p.name in ("vocabulary", "background"):
                    text[p.name] = value
                elif p.name in RUNTIME_KNOBS:
                    updates[p.name] = value
                elif p.name in NodeSettings.__dataclass_fields__:
                    settings[p.name] = value
            with self._text_cv:  # a vocabulary still being embedded is the base for a background change
                pending = self._text_jobs.get("vocabulary")
            base = dict(zip(("vocabulary", "background"), pending)) if pending else {}
            with self._config_lock:
                probe = self.pipeline.config.replace(**{**base, **updates, **text})  # validates ranges, NaN, labels
            new_settings = node_settings({**self.settings.__dict__, **settings}) if settings else None
        except (ValueError, TypeError) as exc:
            self.stats.count("bad_input/parameter")
            return SetParametersResult(successful=False, reason=str(exc))
        if updates:
            with self._lock:
                self._updates.update(updates)
        if text:
            self._submit_text("vocabulary", (probe.vocabulary, probe.background))
        if new_settings is not None:
            if new_settings.queries != self.settings.queries:
                self._submit_text("queries", new_settings.queries)
            self.settings = new_settings
        return SetParametersResult(successful=True)

    def _set_queries(self, standing: Optional[Tuple[str, ...]] = None, active: Optional[str] = None) -> None:
        """Replace one part of the query set; the other part is read under the same lock."""
        with self._query_lock:
            cur = self._queries
            standing = cur.standing if standing is None else tuple(standing)
            active = cur.active if active is None else active
            emb = self.pipeline.embed_queries(standing + ((active,) if active else ()))
            self._queries = QuerySet(standing, active, emb)

    # --- text stage ---------------------------------------------------------
    def _submit_text(self, kind: str, payload) -> None:
        with self._text_cv:
            self._text_jobs[kind] = payload  # the newest request of a kind replaces an older one
            self.stats.set_flag("vocabulary_pending", "true")
            self._text_cv.notify()

    def _text_loop(self) -> None:
        while self._running:
            with self._text_cv:
                while self._running and not self._text_jobs:
                    self._text_cv.wait(0.2)
                if not self._running:
                    return
                kind, payload = next(iter(self._text_jobs.items()))
                del self._text_jobs[kind]
                self.text_busy = True
            try:
                t0 = time.perf_counter()
                if kind == "vocabulary":
                    vocab = self.pipeline.prepare_vocabulary(*payload)
                    with self._config_lock:
                        self.pipeline.config = self.pipeline.config.replace(vocabulary=payload[0],
                                                                            background=payload[1])
                        self.pipeline.use_vocabulary(vocab)
                    self.get_logger().info(f"vocabulary ready: {len(vocab.labels)} labels embedded in "
                                           f"{time.perf_counter() - t0:.1f} s")
                else:
                    self.pipeline.embed_queries(payload)  # the slow part, outside the lock
                    self._set_queries(standing=payload)
            except Exception as exc:  # our fault: inputs were validated before submission
                self.stats.count("errors/text")
                self.get_logger().error(f"embedding {kind} failed: {type(exc).__name__}: {exc}")
            finally:
                with self._text_cv:
                    self.text_busy = False
                    if not self._text_jobs:
                        self.stats.set_flag("vocabulary_pending", "false")

    # --- inference stage -------------------------------------------------
    def _take_newest(self) -> Optional[Frame]:
        with self._lock:
            while self._running and self._pending is None:
                self._lock.wait(0.1)
            if not self._running:
                return None
            msg, seq = self._pending
            self._pending = None
            # Set with the hand-over, so "no pending frame and not busy" really means idle.
            self.busy = True
            newest = self._received_seq
        depth, K = self._match_depth(msg.header)
        return Frame(msg, seq, newest, depth, K, self._queries)

    def _inference_loop(self) -> None:
        last_start = 0.0
        while self._running:
            if self.settings.max_rate > 0:  # wait first, then take: the frame taken is the newest
                wait = last_start + 1.0 / self.settings.max_rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            frame = self._take_newest()
            if frame is None:
                return
            try:
                last_start = time.monotonic()
                self.frame_log.append((frame.seq, frame.newest))
                self._infer(frame)
            except Exception as exc:  # the node must survive anything a frame can do
                if not self._running or not rclpy.ok(context=self.context):
                    return  # shutting down: the context is gone, nothing to report
                self.stats.count("errors/inference")
                if isinstance(exc, torch.cuda.OutOfMemoryError):
                    torch.cuda.empty_cache()
                self.get_logger().error(f"frame failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
            finally:
                self.busy = False

    def _apply_updates(self) -> None:
        with self._lock:
            updates, self._updates = self._updates, {}
        if updates:
            with self._config_lock:
                self.pipeline.update(**updates)
            self.get_logger().info(f"applied parameter updates: {sorted(updates)}")

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _infer(self, frame: Frame) -> None:
        header = frame.msg.header
        t_ns = stamp_ns(header.stamp)  # validated on arrival
        s = self.settings
        now = self._now_ns()
        if s.max_age > 0 and now - t_ns > s.max_age * 1e9:
            self.stats.count("dropped_old")
            return
        if not self._outputs_wanted():
            self.stats.count("idle_skipped")
            self.stats.set_flag("idle", "true")
            return
        self.stats.set_flag("idle", "false")
        t0 = time.perf_counter()
        try:
            rgb = frame_to_rgb8(frame.msg)
        except ImageError as exc:
            self._bad_input(exc.reason, str(exc))
            return
        self._apply_updates()
        image = torch.from_numpy(rgb).to(self.pipeline.device, non_blocking=True)
        t1 = time.perf_counter()
        partial = False
        if self.pipeline.propagator is not None and self._since_full + 1 < s.propagate_every:
            carried = self.pipeline.propagate_target(image)  # None when nothing is carried or it was lost
            if carried is not None and carried.queries == (frame.queries.active,):
                result, partial = carried, True
                self._since_full += 1
        if not partial:
            result = self.pipeline.process(image, query_embeddings=frame.queries.embeddings)
        if result.tokens.is_cuda:
            torch.cuda.synchronize(result.tokens.device)  # so the pipeline/overhead split is honest
        t2 = time.perf_counter()
        if partial:
            self.stats.count("frames/propagated")
        else:
            self.stats.count("frames/full")
            if self.pipeline.propagator is not None:  # sam2 mode needs the lock now, to carry the target
                result = self._track_or_reset(result)
                self._carry_target(image, result, frame.queries)
        self.stats.on_processed(time.perf_counter() - t0, t2 - t1)
        done = Processed(result, image, header, frame.depth, frame.K, frame.queries, t_ns, partial)
        with self._handover:
            if self._to_publish is not None:
                self.stats.count("dropped_publish")  # the publish stage fell behind: newest wins
            self._to_publish = done
            self._handover.notify()

    def _carry_target(self, image: torch.Tensor, result: FrameResult, queries: QuerySet) -> None:
        """After a full frame: with target_tracking sam2, SAM2 carries the active query's locked target."""
        self._since_full = 0
        groundings = result.groundings
        if queries.active and groundings and groundings[-1].locked and self.settings.propagate_every > 1:
            self.pipeline.start_target(image, result, len(groundings) - 1)
        else:
            self.pipeline.stop_target()

    def _track_or_reset(self, result: FrameResult) -> FrameResult:
        """Tracks, in frame order, on the one stage that owns the tracker: the publish stage, off the
        critical path (a frame it drops is one the tracks coast over), or the inference stage in
        target_tracking sam2 mode, which needs the lock before the next frame."""
        if self.settings.tracking:
            return self._track(result)
        self.tracker.reset()
        self.locks.reset()
        return result

    def _track(self, result: FrameResult) -> FrameResult:
        """Track ids, smoothed labels and locked targets; settings changed at runtime apply here."""
        s = self.settings
        cfg = tracker_config(s)
        if cfg != self.tracker.config:
            self.tracker.config = cfg
        self.locks.configure(s.lock_margin, s.lock_frames)
        t0 = time.perf_counter()
        result = self.pipeline.track(result, self.tracker, self.locks)
        result.timings["track"] = time.perf_counter() - t0
        return result

    def _match_depth(self, header) -> Tuple[Optional[Image], Optional[np.ndarray]]:
        """At hand-over: the buffered depth frame nearest the image's stamp, kept with the frame."""
        if not self._depth:
            return None, None
        t = stamp_ns(header.stamp)
        stamp, depth_msg = min(list(self._depth), key=lambda d: abs(d[0] - t))
        if abs(stamp - t) > self.settings.sync_tolerance * 1e9:
            self.stats.count("depth/unmatched_stamp")
            self.get_logger().warning("no depth within sync_tolerance of the image; 3D values are NaN",
                                      throttle_duration_sec=5.0)
            return None, None
        if self._K is None:
            self.stats.count("depth/no_camera_info")
            self.get_logger().warning("depth without camera_info; 3D values are NaN", throttle_duration_sec=5.0)
            return None, None
        return depth_msg, self._K

    # --- publish stage ----------------------------------------------------
    def _publish_loop(self) -> None:
        while self._running:
            with self._handover:
                while self._running and self._to_publish is None:
                    self._handover.wait(0.1)
                if not self._running:
                    return
                item, self._to_publish = self._to_publish, None
            try:
                self._publish(item)
            except Exception as exc:
                if not self._running or not rclpy.ok(context=self.context):
                    return
                self.stats.count("errors/publish")
                self.get_logger().error(f"publishing failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def _depth_tensor(self, item: Processed) -> Optional[torch.Tensor]:
        if item.depth is None:
            return None
        try:
            depth = depth_to_meters(item.depth)
        except ImageError as exc:
            self.stats.count(f"depth/{exc.reason}")
            self.get_logger().warning(f"unreadable depth: {exc}", throttle_duration_sec=5.0)
            return None
        if depth.shape != tuple(item.result.frame_hw):
            self.stats.count("depth/size_mismatch")
            self.get_logger().warning(f"depth {depth.shape[::-1]} does not match the image "
                                      f"{tuple(item.result.frame_hw)[::-1]}; 3D values are NaN",
                                      throttle_duration_sec=5.0)
            return None
        return torch.from_numpy(depth).to(self.pipeline.device, non_blocking=True)

    def _publish(self, item: Processed) -> None:
        t0, cpu0 = time.perf_counter(), time.thread_time()
        s = self.settings
        if not item.partial and self.pipeline.propagator is None:
            item.result = self._track_or_reset(item.result)
        subs = lambda pub: pub is not None and pub.get_subscription_count() > 0  # noqa: E731
        want_regions, want_point = subs(self.pub_regions), subs(self.pub_point)
        want_grounded, want_all = subs(self.pub_grounded), subs(self.pub_grounded_all)
        want_overlay = s.publish_overlay and subs(self.pub_overlay)
        want_markers = s.publish_markers and subs(self.pub_markers)
        want_instance = s.publish_instance_mask and subs(self.pub_instance)
        want_cloud, want_box, want_pose = subs(self.pub_cloud), subs(self.pub_box), subs(self.pub_pose)
        want_det2d, want_det3d = subs(self.pub_det2d), subs(self.pub_det3d)
        if item.partial:  # a carried target: the full-frame outputs keep their last full frame
            want_regions = want_all = want_overlay = want_markers = want_instance = want_det2d = want_det3d = False
        result, header = item.result, item.header
        groundings = result.groundings
        active = bool(item.queries.active)
        active_g: Optional[Grounding] = groundings[-1] if active and groundings else None
        # The target's cloud and boxes, only for a found target and only when someone reads them.
        want_target = bool(active_g is not None and active_g.found and (
            want_cloud or want_box or want_pose or want_markers or want_det3d))
        need_3d = want_regions or want_point or want_markers or want_grounded or want_all or want_target or want_det3d
        req = ComposeRequest(instance=want_instance, crops=want_regions or want_grounded or want_all,
                             overlay=want_overlay, depth=self._depth_tensor(item) if need_3d else None,
                             K=item.K, depth_stride=s.depth_stride, alpha=s.overlay_alpha,
                             grounded=active_g.region if active_g else -1, target=want_target,
                             max_points=s.max_cloud_points)
        out = compose(result, item.image, req)
        t_compose = time.perf_counter()
        if not item.partial:  # before publishing: a client that saw this frame can ground on it
            self._last = (item, out)
        labels = result.labels
        names = [labels[int(i)] for i in out.label]
        if out.track_ids is not None:  # overlay and markers show the track id: "mug #12"
            names = [f"{n} #{t}" if t else n for n, t in zip(names, out.track_ids.tolist())]
        if out.points is not None and len(out):
            missing = int((~np.isfinite(out.points[:, 2])).sum())
            if missing:
                self.stats.count("depth/region_without_valid_depth", missing)
        published: List[str] = []
        if want_regions:
            tokens = result.tokens.float().cpu().numpy() if s.publish_tokens else None
            self.pub_regions.publish(messages.region_array_msg(trmsg, labels, result.num_background, out, header,
                                                               tokens))
            published.append("regions")
        if want_instance:
            self.pub_instance.publish(array_to_image(out.instance, "mono16", header))
            published.append("instance_mask")
        g_msgs = [messages.grounded_msg(trmsg, labels, out, g, header) for g in groundings] \
            if (want_grounded or want_all) else []
        if active_g is not None and want_grounded:
            self.pub_grounded.publish(g_msgs[-1])
            published.append("grounded")
        if groundings and want_all:
            self.pub_grounded_all.publish(messages.grounded_array_msg(trmsg, g_msgs, header))
            published.append("grounded_all")
        point = messages.grounded_point(out, active_g, header)
        T = out_header = t_out = None
        if want_det3d or (point is not None and want_point) or (
                out.target is not None and (want_cloud or want_box or want_pose)):
            frame_id, T = self.frames.resolve(header)  # one lookup for every 3D output of the frame
            out_header = header_in(header, frame_id)
            t_out = target3d.moved(out.target, T) if out.target is not None else None
        if point is not None and want_point:
            p = T.points(np.array([[point.point.x, point.point.y, point.point.z]]))[0]
            moved_point = PointStamped(header=out_header)
            moved_point.point.x, moved_point.point.y, moved_point.point.z = (float(v) for v in p)
            self.pub_point.publish(moved_point)
            published.append("grounded_point")
        if t_out is not None and want_cloud:
            self.pub_cloud.publish(target3d.point_cloud(t_out, out_header))
            published.append("grounded_cloud")
        if t_out is not None and want_box:
            self.pub_box.publish(target3d.grounded_box(trmsg, t_out, out_header, active_g.query, active_g.track_id))
            published.append("grounded_box")
        if t_out is not None and want_pose:
            self.pub_pose.publish(target3d.pose_stamped(t_out, out_header))
            published.append("grounded_pose")
        if want_det2d:
            self.pub_det2d.publish(detection2d_array(vision_msgs, header, labels, out))
            published.append("detections")
        if want_det3d:
            self.pub_det3d.publish(detection3d_array(vision_msgs, out_header, labels, out, t_out,
                                                     active_g.region if active_g else -1, T))
            published.append("detections_3d")
        t_messages = time.perf_counter()
        if want_overlay:
            banner = RANDOM_BANNER if self.config.random_weights else ""
            img = viz.draw_labels(out.overlay, names, out.boxes, out.prob, out.colors,
                                  grounded=active_g.region if active_g else None,
                                  query=active_g.query if active_g else "",
                                  found=bool(active_g and active_g.found), banner=banner)
            self.pub_overlay.publish(array_to_image(img, "rgb8", header))
            published.append("overlay")
        t_overlay = time.perf_counter()
        if want_markers:
            lifetime = self._marker_lifetime()
            gp = (point.point.x, point.point.y, point.point.z) if point is not None else None
            arr = viz.markers(header, names, out.points, gp, out.colors, lifetime_s=lifetime)
            arr.markers.extend(viz.box_markers(header, out.boxes, out.points, item.K, out.colors,
                                               lifetime_s=lifetime))
            if out.target is not None:  # in the camera frame, like the other markers
                arr.markers.extend(target3d.box_markers(out.target, header, lifetime_s=lifetime))
            self.pub_markers.publish(arr)
            published.append("markers")
        # Keep what the ground service needs, not the frame-sized arrays (a mask is recomputed on request).
        out.instance = out.overlay = out.crop_data = None
        out.target = None
        item.image = None
        if result.frame_hw[0] * result.frame_hw[1] >= TRIM_PIXELS:
            release_free_memory()
        self._frame_period.append(time.monotonic())
        latency = max((self._now_ns() - item.stamp_ns) * 1e-9, 0.0)
        t_end = time.perf_counter()
        self.stats.on_published(latency, t_end - t0, published, {
            "track": result.timings.get("track", 0.0) if self.pipeline.propagator is None else 0.0,
            "compose": t_compose - t0, "messages": t_messages - t_compose, "overlay_text": t_overlay - t_messages,
            "markers": t_end - t_overlay}, cpu_s=time.thread_time() - cpu0)

    def _marker_lifetime(self) -> float:
        """Markers outlive the gap to the next frame, so a slow device does not make them blink."""
        if len(self._frame_period) < 2:
            return 2.0
        period = (self._frame_period[-1] - self._frame_period[0]) / (len(self._frame_period) - 1)
        return float(min(max(3.0 * period, 0.5), 60.0))

    # --- service and diagnostics -----------------------------------------
    def _on_ground(self, request, response):
        try:
            return self._ground(request, response)
        except Exception as exc:  # our fault: requests are validated first; answer anyway
            self.stats.count("errors/service")
            self.get_logger().error(f"ground failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
            response.success, response.message = False, f"internal error: {type(exc).__name__}"
            return response

    def _ground(self, request, response):
        try:
            query = normalize_query(request.query)
        except LabelError as exc:
            self.stats.count("bad_input/query")
            response.success, response.message = False, f"rejected query: {exc}"
            return response
        if not query:
            response.success, response.message = False, "empty query"
            return response
        last = self._last
        if last is None:
            response.success, response.message = False, "no frame has been processed yet"
            return response
        item, out = last
        q = self.pipeline.embed_queries([query])
        region, prob, cos, margin, found = (t.float().cpu() for t in self.pipeline.ground(
            item.result.tokens, q, item.result.vocab))
        g = Grounding(query, int(region[0]), float(prob[0]), float(cos[0]), float(margin[0]), bool(found[0]),
                      item.result.track_id_of(int(region[0])))
        crop = region_crop(item.result, g.region) if request.include_mask and g.region >= 0 else None
        response.result = messages.grounded_msg(trmsg, item.result.labels, out, g, item.header,
                                                with_mask=bool(request.include_mask), crop=crop)
        response.success = True
        response.message = "found" if g.found else "not found (abstained)"
        return response

    def _publish_diagnostics(self) -> None:
        if self.pipeline.device.type == "cuda":  # what the node's tensors have held at most (caching allocator)
            self.stats.set_flag("device_memory_peak_mb",
                                f"{torch.cuda.max_memory_reserved(self.pipeline.device) / 2**20:.0f}")
        self.pub_diag.publish(self.stats.message(self.get_clock().now().to_msg(),
                                                 f"{self.get_fully_qualified_name()}: inference",
                                                 str(self.pipeline.device)))

    def destroy_node(self):
        threads = getattr(self, "_threads", [])  # absent when the constructor failed
        self._running = False
        for cv in (getattr(self, "_lock", None), getattr(self, "_handover", None), getattr(self, "_text_cv", None)):
            if cv is not None:
                with cv:
                    cv.notify_all()
        for t in threads:
            if t.is_alive() and threading.current_thread() is not t:
                t.join(timeout=10.0)
        return super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = TextRegionNode()
    except StartupError as exc:
        rclpy.logging.get_logger("textregion").fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        # Ctrl-C while models load: leave quietly, as a user who changed their mind expects.
        rclpy.logging.get_logger("textregion").info("interrupted during startup")
        rclpy.try_shutdown()
        return 0
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
