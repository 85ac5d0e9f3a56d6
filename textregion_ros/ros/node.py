"""The textregion node: a thin adapter between ROS topics and the core Pipeline.

Threads: the executor runs subscriptions, the query topic, parameters, the
``ground`` service and diagnostics; one worker thread runs inference on the
newest frame only (a single slot, overwritten, never a queue).
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Deque, List, Optional, Tuple

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

import textregion_ros.msg as trmsg
import textregion_ros.srv as trsrv

from ..classify import ground
from ..encoders.text import MAX_QUERY_BYTES
from ..encoders.weights import WeightsUnavailableError
from ..geometry import region_points
from ..pipeline import Pipeline
from ..results import FrameResult, Grounding
from . import messages, viz
from .convert import ImageError, array_to_image, compressed_to_rgb8, depth_to_meters, image_to_rgb8
from .diagnostics import Stats
from .params import RUNTIME_KNOBS, NodeSettings, node_settings, parameter_defaults, pipeline_config

MODEL_KNOBS = ("preset", "encoder_model", "encoder_weights", "random_weights", "mask_source", "sam2_model",
               "sam2_weights", "sam2_input_size", "points_per_side", "device", "dtype", "compile", "templates",
               "tiles", "use_global_view", "global_weight", "multimask", "point_batch", "stability_score_offset",
               "superpixel_segments", "use_head_mlp", "compressed", "image_qos")
RANDOM_BANNER = "RANDOM WEIGHTS: every label, score and grounding here is meaningless"


class StartupError(RuntimeError):
    pass


def validate_query(text: str) -> Optional[str]:
    """-> a reason to reject, or None."""
    if len(text.encode("utf-8", errors="replace")) > MAX_QUERY_BYTES:
        return f"query longer than {MAX_QUERY_BYTES} bytes"
    if text.strip() and not any(ch.isprintable() and not ch.isspace() for ch in text):
        return "query has only control characters"
    return None


class TextRegionNode(Node):
    def __init__(self, pipeline: Optional[Pipeline] = None, **kwargs):
        super().__init__("textregion", **kwargs)
        self.stats = Stats()
        preset_name = self.declare_parameter("preset", "realtime").value
        try:
            self._defaults = parameter_defaults(preset_name)
            for name, value in self._defaults.items():
                if name != "preset":
                    self.declare_parameter(name, value)
            values = {name: self.get_parameter(name).value for name in self._defaults}
            self.config = pipeline_config(values)
            self.settings: NodeSettings = node_settings(values)
        except ValueError as exc:
            raise StartupError(f"bad parameters: {exc}") from exc
        if pipeline is None:
            self.get_logger().info(f"loading models: {self.config.encoder_model} ({self.config.encoder_weights or 'default'}), "
                                   f"SAM2 {self.config.sam2_model}, preset {values['preset']}")
            try:
                pipeline = Pipeline(self.config)
            except (WeightsUnavailableError, ValueError, RuntimeError) as exc:
                raise StartupError(str(exc)) from exc
        self.pipeline = pipeline
        if self.config.random_weights:
            self.get_logger().warning(RANDOM_BANNER + " (random_weights:=true is for tests and benchmarks)")
        self.active_query = ""
        self.busy = False  # the worker is inside a frame
        self._lock = threading.Condition()
        self._pending: Optional[Tuple[object, int]] = None
        self._received_seq = 0
        self._updates: dict = {}
        self._last: Optional[tuple] = None  # (FrameResult, HostFrame, header) of the newest frame
        self.frame_log: Deque[Tuple[int, int]] = deque(maxlen=10000)  # (processed seq, newest seq at start)
        self._depth: Deque[Tuple[int, Image]] = deque(maxlen=30)
        self._K: Optional[np.ndarray] = None
        self._warned_qos = False
        self._create_interfaces()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._running = True
        self._worker = threading.Thread(target=self._work, name="textregion-inference", daemon=True)
        self._worker.start()
        self.get_logger().info("ready: publish queries on 'query' (std_msgs/String)")

    # --- interfaces -------------------------------------------------------
    def _create_interfaces(self) -> None:
        s = self.settings
        group = ReentrantCallbackGroup()
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
        self.pub_regions = self.create_publisher(trmsg.RegionArray, "regions", 5)
        self.pub_instance = self.create_publisher(Image, "instance_mask", 5)
        self.pub_grounded = self.create_publisher(trmsg.GroundedRegion, "grounded", 5)
        self.pub_grounded_all = self.create_publisher(trmsg.GroundedRegionArray, "grounded_all", 5)
        self.pub_point = self.create_publisher(PointStamped, "grounded_point", 5)
        self.pub_overlay = self.create_publisher(Image, "overlay", 2)
        self.pub_markers = self.create_publisher(MarkerArray, "markers", 2)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(trsrv.Ground, "ground", self._on_ground, callback_group=group)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=group)
        self.pub_active.publish(String(data=""))

    def _on_incompatible_qos(self, event) -> None:
        self.stats.count("qos/incompatible")
        if not self._warned_qos:
            self._warned_qos = True
            self.get_logger().warning(
                f"a publisher's QoS is incompatible with this subscription (policy {event.last_policy_kind}); "
                f"camera inputs use image_qos={self.settings.image_qos!r}: set image_qos:=reliable or make the "
                f"publisher best-effort")

    def _bad_input(self, reason: str, detail: str) -> None:
        self.stats.count(f"bad_input/{reason}")
        self.get_logger().warning(f"skipping frame: {detail}", throttle_duration_sec=5.0)

    # --- inputs -----------------------------------------------------------
    def _on_image(self, msg) -> None:
        self.stats.on_received()
        with self._lock:
            self._received_seq += 1
            if self._pending is not None:
                self.stats.count("dropped_stale")
            self._pending = (msg, self._received_seq)
            self._lock.notify()

    def _on_depth(self, msg: Image) -> None:
        self._depth.append((Time.from_msg(msg.header.stamp).nanoseconds, msg))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        K = np.array(msg.k, dtype=np.float64).reshape(3, 3)
        if K[0, 0] > 0 and K[1, 1] > 0:
            self._K = K
        else:
            self.stats.count("depth/bad_camera_info")

    def _on_query(self, msg: String) -> None:
        reason = validate_query(msg.data)
        if reason:
            self.stats.count("bad_input/query")
            self.get_logger().warning(f"rejected query: {reason}", throttle_duration_sec=2.0)
            return
        self.active_query = msg.data.strip()
        self.pub_active.publish(String(data=self.active_query))
        self.get_logger().info(f"active query: {self.active_query!r}" if self.active_query else "query cleared")

    def _on_set_parameters(self, params) -> SetParametersResult:
        updates, settings = {}, {}
        for p in params:
            if p.name in MODEL_KNOBS:
                return SetParametersResult(successful=False, reason=f"{p.name} needs a node restart")
            if p.name in RUNTIME_KNOBS:
                updates[p.name] = p.value
            elif p.name in self._defaults:
                settings[p.name] = p.value
        try:
            if updates:
                merged = {**{k: getattr(self.pipeline.config, k) for k in RUNTIME_KNOBS}, **self._updates, **updates}
                probe = pipeline_config({"preset": self.get_parameter("preset").value, **{
                    k: (list(v) if isinstance(v, tuple) else v) for k, v in merged.items()}})
                updates = {k: getattr(probe, k) for k in updates}
            if settings:
                current = {k: getattr(self.settings, k) for k in NodeSettings.__dataclass_fields__}
                new_settings = node_settings({**current, **settings})
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if settings:
            self.settings = new_settings
        if updates:
            with self._lock:
                self._updates.update(updates)
        return SetParametersResult(successful=True)

    # --- inference worker -------------------------------------------------
    def _take_newest(self) -> Optional[Tuple[object, int, int]]:
        with self._lock:
            while self._running and self._pending is None:
                self._lock.wait(0.1)
            if not self._running:
                return None
            msg, seq = self._pending
            self._pending = None
            # Set with the hand-over, so "no pending frame and not busy" really means idle.
            self.busy = True
            return msg, seq, self._received_seq

    def _work(self) -> None:
        last_start = 0.0
        while self._running:
            item = self._take_newest()
            if item is None:
                return
            if self.settings.max_rate > 0:
                wait = last_start + 1.0 / self.settings.max_rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                    with self._lock:  # a newer frame may have arrived while we waited
                        if self._pending is not None:
                            self.stats.count("dropped_stale")
                            item = (*self._pending, self._received_seq)
                            self._pending = None
            msg, seq, newest = item
            last_start = time.monotonic()
            self.frame_log.append((seq, newest))
            try:
                self._process(msg)
            except Exception as exc:  # the node must survive anything a frame can do
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
            self.pipeline.update(**updates)
            self.get_logger().info(f"applied parameter updates: {sorted(updates)}")

    def _frame_age(self, header) -> float:
        return (self.get_clock().now() - Time.from_msg(header.stamp)).nanoseconds * 1e-9

    def _process(self, msg) -> None:
        header = msg.header
        if self.settings.max_age > 0 and self._frame_age(header) > self.settings.max_age:
            self.stats.count("dropped_old")
            return
        t0 = time.perf_counter()
        try:
            rgb = compressed_to_rgb8(msg) if isinstance(msg, CompressedImage) else image_to_rgb8(msg)
        except ImageError as exc:
            self._bad_input(exc.reason, str(exc))
            return
        self._apply_updates()
        queries = list(self.settings.queries) + ([self.active_query] if self.active_query else [])
        t1 = time.perf_counter()
        result = self.pipeline.process(rgb, queries=queries)
        if result.tokens.is_cuda:
            torch.cuda.synchronize(result.tokens.device)  # so the pipeline/overhead split is honest
        t2 = time.perf_counter()
        self._publish(result, rgb, header, active=bool(self.active_query))
        self.stats.on_processed(max(self._frame_age(header), 0.0), time.perf_counter() - t0, t2 - t1)

    def _match_depth(self, header, hw) -> Tuple[Optional[torch.Tensor], Optional[np.ndarray]]:
        if not self._depth:
            return None, None
        t = Time.from_msg(header.stamp).nanoseconds
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
        try:
            depth = depth_to_meters(depth_msg)
        except ImageError as exc:
            self.stats.count(f"depth/{exc.reason}")
            self.get_logger().warning(f"unreadable depth: {exc}", throttle_duration_sec=5.0)
            return None, None
        if depth.shape != tuple(hw):
            self.stats.count("depth/size_mismatch")
            self.get_logger().warning(f"depth {depth.shape[::-1]} does not match the image {tuple(hw)[::-1]}; "
                                   f"3D values are NaN", throttle_duration_sec=5.0)
            return None, None
        return torch.from_numpy(depth).to(self.pipeline.device), self._K

    def _publish(self, result: FrameResult, rgb: np.ndarray, header, active: bool) -> None:
        s = self.settings
        subs = lambda pub: pub.get_subscription_count() > 0  # noqa: E731
        want_regions, want_point = subs(self.pub_regions), subs(self.pub_point)
        want_grounded, want_all = subs(self.pub_grounded), subs(self.pub_grounded_all)
        want_overlay = s.publish_overlay and subs(self.pub_overlay)
        want_markers = s.publish_markers and subs(self.pub_markers)
        want_instance = s.publish_instance_mask and subs(self.pub_instance)
        points, K = None, None
        if want_regions or want_point or want_markers or want_grounded or want_all:
            depth, K = self._match_depth(header, result.frame_hw)
            if depth is not None and len(result):
                points = region_points(result.binary_masks, depth, torch.as_tensor(K), stride=s.depth_stride)
                if not torch.isfinite(points).all():
                    self.stats.count("depth/region_without_valid_depth", int((~torch.isfinite(points[:, 2])).sum()))
        need_masks = want_regions or want_grounded or want_all
        host = messages.host_frame(result, need_masks, points, s.publish_tokens)
        self._last = (result, host, header)
        groundings = result.groundings
        active_g: Optional[Grounding] = groundings[-1] if active and groundings else None
        if want_regions:
            self.pub_regions.publish(messages.region_array_msg(trmsg, result, host, header))
        # One instance map and one list of label names serve every output that needs them.
        inst = result.instance_map().cpu().numpy() if (want_instance or want_overlay) else None
        labels = [result.labels[int(i)] for i in host.label]
        if want_instance:
            self.pub_instance.publish(array_to_image(inst.astype(np.uint16), "mono16", header))
        g_msgs = [messages.grounded_msg(trmsg, result, host, g, header) for g in groundings] \
            if (want_grounded or want_all or want_point) else []
        if active_g is not None and want_grounded:
            self.pub_grounded.publish(g_msgs[-1])
        if groundings and want_all:
            self.pub_grounded_all.publish(messages.grounded_array_msg(trmsg, g_msgs, header))
        gpoint = None
        if active_g is not None and active_g.found and active_g.region >= 0 and host.points is not None:
            p = host.points[active_g.region]
            if all(math.isfinite(float(v)) for v in p):
                gpoint = p
                if want_point:
                    ps = PointStamped()
                    ps.header = header
                    ps.point.x, ps.point.y, ps.point.z = (float(v) for v in p)
                    self.pub_point.publish(ps)
        if want_overlay:
            banner = RANDOM_BANNER if self.config.random_weights else ""
            img = viz.draw_overlay(rgb, inst, labels, host.boxes, host.prob,
                                   grounded=active_g.region if active_g else None,
                                   query=active_g.query if active_g else "", found=bool(active_g and active_g.found),
                                   banner=banner, alpha=s.overlay_alpha)
            self.pub_overlay.publish(array_to_image(img, "rgb8", header))
        if want_markers:
            arr = viz.markers(header, labels, host.points, gpoint)
            arr.markers.extend(viz.box_markers(header, host.boxes, host.points, K))
            self.pub_markers.publish(arr)

    # --- service and diagnostics -----------------------------------------
    def _on_ground(self, request, response):
        reason = validate_query(request.query)
        if reason or not request.query.strip():
            response.success, response.message = False, reason or "empty query"
            return response
        last = self._last
        if last is None:
            response.success, response.message = False, "no frame has been processed yet"
            return response
        result, host, header = last
        cfg = self.pipeline.config
        q = self.pipeline.embed_queries([request.query.strip()])
        region, prob, cos, margin, found = (t.float().cpu() for t in ground(
            result.tokens, q, self.pipeline.background_emb, cfg.region_logit_scale, cfg.abstain_threshold))
        g = Grounding(request.query.strip(), int(region[0]), float(prob[0]), float(cos[0]), float(margin[0]),
                      bool(found[0]))
        if host.masks is None and len(result):
            host = messages.host_frame(result, True, None, False)
            host.points = last[1].points
        response.result = messages.grounded_msg(trmsg, result, host, g, header)
        response.success = True
        response.message = "found" if g.found else "not found (abstained)"
        return response

    def _publish_diagnostics(self) -> None:
        self.pub_diag.publish(self.stats.message(self.get_clock().now().to_msg(),
                                                 f"{self.get_fully_qualified_name()}: inference",
                                                 str(self.pipeline.device)))

    def destroy_node(self):
        worker = getattr(self, "_worker", None)  # absent when the constructor failed
        if worker is not None:
            self._running = False
            with self._lock:
                self._lock.notify_all()
            if worker.is_alive() and threading.current_thread() is not worker:
                worker.join(timeout=10.0)
        return super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    rclpy.init(args=args)
    try:
        node = TextRegionNode()
    except StartupError as exc:
        rclpy.logging.get_logger("textregion").fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 2
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
