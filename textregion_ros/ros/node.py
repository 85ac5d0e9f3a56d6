"""The textregion lifecycle node: builds the parts below and drives their states. Wiring only.

    unconfigured --configure--> inactive --activate--> active
    configure   validates the parameters, loads the models, embeds the vocabulary, creates publishers
    activate    subscribes to the camera and the query, starts the inference and publish stages
    deactivate  stops both stages and unsubscribes (nothing is published); the models stay loaded
    cleanup     frees the models and the publishers

Parts: intake, inference, publish (outputs.py: one row per output), text_stage, services, parameters;
every stage hands over through one LatestSlot (handover.py): newest wins, nothing queues.
"""
from __future__ import annotations

import threading
import time
from typing import List, Optional

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String

import textregion_ros.srv as trsrv

from .camera import Camera
from .context import NodeContext
from .diagnostics import Stats, status_message
from .frames import OutputFrame
from .inference import InferenceStage
from .loading import StartupError, load_pipeline, release_models
from .outputs import OUTPUTS, RANDOM_BANNER
from .parameters import Parameters
from .memory_stage import MemoryStage
from .best import BestAcrossCameras
from .services import GroundService, MemoryServices, NewestFrame
from .tf_buffer import make_lookup
from .text_stage import STANDING, VOCABULARY, TextStage

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
SERVICE_QUEUE = 1000  # ground requests held while earlier ones are answered
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class TextRegionNode(LifecycleNode):
    def __init__(self, pipeline=None, **kwargs):
        super().__init__("textregion", **kwargs)
        self.stats = Stats()
        self.params = Parameters(self, self._apply)
        self.ctx = NodeContext(self.get_logger(), self.stats, lambda: self.get_clock().now().nanoseconds,
                               self.params.settings)
        self._given_pipeline = pipeline  # tests and benchmarks share one set of models between nodes
        self._group = ReentrantCallbackGroup()
        self._subs: List = []
        self._pubs: dict = {}
        self.intake = self.text = self.publisher = self.inference = self.memory = None
        self.cameras: List[Camera] = []
        self.best = None  # grounded_best, with several cameras
        self._memory_services: List = []
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)  # in every state
        # Steady clock: with use_sim_time and no /clock the node's clock stands still (diagnostics say why).
        self.create_timer(1.0, self._publish_diagnostics, callback_group=self._group,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.last_failure = ""  # why the last configure failed
        self.finalized = threading.Event()  # the shutdown transition ran: main() leaves

    # --- public points: what tests, benchmarks and services observe ---
    @property
    def pipeline(self):
        return self.ctx.pipeline

    @property
    def settings(self):
        return self.ctx.settings

    @property
    def active_query(self) -> str:
        return self.text.queries.active if self.text is not None and self.text.queries else ""

    @property
    def frames(self) -> OutputFrame:
        """Where 3D outputs go (target_frame through tf2); replaceable while active (tests stand in tf)."""
        return self.publisher.frames

    @frames.setter
    def frames(self, frames: OutputFrame) -> None:
        self.publisher.frames = frames

    def camera(self, name: str = "") -> Camera:
        """A camera's part by name ("" = the first: the unnamed default of a single-camera node)."""
        return next(c for c in self.cameras if c.name == name) if name else self.cameras[0]

    def idle(self) -> bool:
        """No frame waiting, none in inference, none being published, on any camera."""
        return not self.cameras or all(c.idle() for c in self.cameras)

    def inferring(self) -> bool:
        """The inference stage is inside a frame."""
        return any(c.intake.slot.busy for c in self.cameras)

    def text_idle(self) -> bool:
        return self.text is None or not self.text.busy()

    def stages_alive(self) -> bool:
        parts = (self.text, self.inference) + tuple(c.publisher for c in self.cameras) + (
            (self.memory,) if self.memory is not None else ())
        return all(p is not None and p.alive for p in parts)

    def has_depth(self, t_ns: int, camera: str = "") -> bool:
        return bool(self.cameras) and self.camera(camera).intake.has_depth(t_ns)

    # --- transitions ---
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            if self.params.error:
                raise StartupError(f"bad parameters: {self.params.error}")
            if len(self.params.settings.cameras) > 1 and self.params.config.target_tracking == "sam2":
                # Checked before minutes of model loading: the carried target is the pipeline's, one camera's.
                raise StartupError("target_tracking sam2 carries one target for one camera: use it with one camera")
            pipeline = self._given_pipeline or load_pipeline(self.params.config, self.get_logger())
        except StartupError as exc:
            self.last_failure = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            return FAILURE
        self.ctx.settings, self.ctx.pipeline = self.params.settings, pipeline
        self.ctx.random_weights = self.params.config.random_weights
        if self.ctx.random_weights:
            self.get_logger().warning(RANDOM_BANNER + " (random_weights:=true is for tests and benchmarks)")
        self._build_parts()
        self.text.start(self.ctx.settings.queries)
        return SUCCESS

    def _build_parts(self) -> None:
        ctx, s = self.ctx, self.ctx.settings
        self.pub_active = self.create_lifecycle_publisher(String, "active_query", LATCHED)
        self.text = TextStage(ctx, self._on_active)
        lookup = make_lookup(self, lambda reason, text: ctx.bad_input(reason, text, "transform")) \
            if s.target_frame or s.memory else None
        self._arrived = threading.Event()
        self.cameras = [Camera(name, ctx, OutputFrame(self, s.target_frame, s.tf_timeout, self.stats, lookup=lookup),
                               self._arrived) for name in (s.cameras or ("",))]
        for row in OUTPUTS:
            if (row.stage == "memory" and not s.memory) or (row.stage == "cameras" and len(self.cameras) < 2):
                continue
            if not row.available():
                if row.enabled(s):
                    self.get_logger().info(f"{row.type_name.split('/')[0]} is not installed: {row.name} is not "
                                           f"published")
                continue
            if row.stage == "frame":
                for cam in self.cameras:
                    cam.publishers[row.name] = self.create_lifecycle_publisher(row.msg_class(), cam.topic(row.name),
                                                                              row.depth)
            else:
                self._pubs[row.name] = self.create_lifecycle_publisher(row.msg_class(), row.name, row.depth)
        # The first camera's parts under their old names: a single-camera node (and its tests) reads as before.
        first = self.cameras[0]
        self.intake, self.publisher, self._publish_slot = first.intake, first.publisher, first.slot
        if s.memory:
            self._build_memory(lookup)
        self.inference = InferenceStage(ctx, self.cameras, self.text, self._arrived)
        if len(self.cameras) > 1:
            self.best = BestAcrossCameras(ctx, self.cameras, self._pubs)
        # KEEP_ALL: a burst of concurrent calls is queued and every caller gets an answer.
        qos = QoSProfile(history=HistoryPolicy.KEEP_ALL, depth=SERVICE_QUEUE, reliability=ReliabilityPolicy.RELIABLE)
        newest = {c.name: NewestFrame(c, self.inference) for c in self.cameras}
        self._service = self.create_service(trsrv.Ground, "ground", GroundService(ctx, newest),
                                            qos_profile=qos, callback_group=self._group)

    def _build_memory(self, lookup) -> None:
        from std_srvs.srv import Trigger

        cfg, ctx = self.params.config, self.ctx
        info = {"encoder": f"{cfg.encoder_model}|{cfg.encoder_weights}" + ("|random" if cfg.random_weights else ""),
                "token_dim": int(ctx.pipeline.fallback_background.embeddings.shape[-1]),
                "frame": ctx.settings.memory_frame}
        self.memory = MemoryStage(ctx, self._pubs, lookup, info)
        self.memory.load()
        for cam in self.cameras:
            cam.publisher.memory = self.memory
        svc = MemoryServices(ctx, self.memory)
        self._memory_services = [
            self.create_service(trsrv.Find, "find", svc.find, callback_group=self._group),
            self.create_service(Trigger, "memory/save", svc.save, callback_group=self._group),
            self.create_service(Trigger, "memory/clear", svc.clear, callback_group=self._group)]

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.memory is not None:
            self.memory.slot.reopen()
            self.memory.start()
        for cam in self.cameras:
            cam.reopen()
        self._subscribe()
        self.inference.start()
        for cam in self.cameras:
            cam.publisher.start()
        result = super().on_activate(state)  # activates the lifecycle publishers
        self.pub_active.publish(String(data=self.active_query))
        image = "image/compressed" if self.ctx.settings.compressed else "image"
        topics = [self.resolve_topic_name(cam.topic(image)) for cam in self.cameras]
        for cam, topic in zip(self.cameras, topics):
            cam.ctx.stats.set_flag("input_topic", topic)
            cam.ctx.stats.last_received = time.monotonic()  # the silence counts from activation
        self.get_logger().info(f"ready: waiting for images on {', '.join(topics)}; publish queries on "
                               f"{self.resolve_topic_name('query')} (std_msgs/String)")
        return result

    def _subscribe(self) -> None:
        s, g = self.ctx.settings, self._group
        # Sensor-data QoS (best effort, keep last 5). A deeper reader queue was measured: on a saturated
        # 2-core machine it made rclpy deserialize every 1 MB frame and cut the processed rate by 3x.
        cam_qos = qos_profile_sensor_data if s.image_qos == "sensor_data" else QoSProfile(
            depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        image = (CompressedImage, "image/compressed") if s.compressed else (Image, "image")
        query_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._subs = [self.create_subscription(String, "query", self.text.on_query, query_qos, callback_group=g)]
        for cam in self.cameras:
            intake = cam.intake
            ev = SubscriptionEventCallbacks(incompatible_qos=intake.on_incompatible_qos)
            self._subs += [
                self.create_subscription(image[0], cam.topic(image[1]), intake.on_image, cam_qos, callback_group=g,
                                         event_callbacks=ev),
                self.create_subscription(Image, cam.topic("depth"), intake.on_depth, cam_qos, callback_group=g,
                                         event_callbacks=ev),
                self.create_subscription(CameraInfo, cam.topic("camera_info"), intake.on_camera_info, cam_qos,
                                         callback_group=g, event_callbacks=ev)]

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self.inference.stop()
        for cam in self.cameras:
            cam.publisher.stop()
            cam.intake.reset()
        self._stop_memory(save=True)
        return super().on_deactivate(state)

    def _stop_memory(self, save: bool) -> None:
        if self.memory is None:
            return
        self.memory.stop()
        if save:
            try:
                self.memory.save()
            except OSError as exc:
                self.get_logger().error(f"memory: could not save: {exc}")

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.text.stop()
        cams = [p for c in self.cameras for p in c.publishers.values()]
        for pub in list(self._pubs.values()) + cams + [self.pub_active]:
            self.destroy_lifecycle_publisher(pub)
        self._pubs.clear()
        self.cameras, self.best = [], None
        self.destroy_service(self._service)
        for svc in self._memory_services:
            self.destroy_service(svc)
        self._memory_services = []
        self.intake = self.text = self.publisher = self.inference = self.memory = None
        self.ctx.pipeline = None  # the models go with the last reference
        release_models()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_parts()
        self._stop_memory(save=True)
        self.finalized.set()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_parts()
        return SUCCESS

    def stop_parts(self) -> None:
        """Stop every thread this node started (shutdown, Ctrl-C, destroy_node); safe in any state."""
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        for part in filter(None, (self.inference, *(c.publisher for c in self.cameras), self.text, self.memory)):
            part.stop()

    # --- parameters and queries ---
    def _apply(self, runtime: dict, text: dict, standing) -> None:
        """post_set: settings are read by every part from ctx; pipeline and text knobs go to their stage."""
        self.ctx.settings = self.params.settings
        for cam in self.cameras:  # a named camera's context is a copy with its own counters
            cam.ctx.settings = self.params.settings
        if self.ctx.pipeline is None:
            return  # unconfigured: configure reads the parameters
        if runtime:
            self.inference.updates.put(runtime)
        cfg = self.params.config
        if text:
            self.text.submit(VOCABULARY, (cfg.vocabulary, cfg.background))
        if standing is not None:
            self.text.submit(STANDING, standing)

    def _on_active(self, text: str) -> None:
        """The text stage has embedded the active query and it is in use: latch it."""
        self.pub_active.publish(String(data=text))

    def _publish_diagnostics(self) -> None:
        named = [c for c in self.cameras if c.name]
        if named:  # the node's own entry (models, text, services) is silent only when every camera is
            self.stats.last_received = max(c.ctx.stats.last_received for c in named)
            self.stats.set_flag("input_topic", "any camera")
        stats = [(self.stats, "")] + [(c.ctx.stats, c.name) for c in named]
        self.pub_diag.publish(status_message(stats, self.ctx.pipeline, self._state_machine.current_state[1],
                                             self.get_clock().now().to_msg(), self.get_fully_qualified_name()))

    def destroy_node(self):
        self.stop_parts()
        self._stop_memory(save=True)  # Ctrl-C: the memory is kept like on a shutdown transition
        return super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    from .run import run

    return run(TextRegionNode, args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
