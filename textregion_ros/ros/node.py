"""The textregion lifecycle node: builds the parts below and drives their states. Wiring only.

    unconfigured --configure--> inactive --activate--> active
    configure   validates the parameters, loads the models, embeds the vocabulary, creates publishers
    activate    subscribes to the camera and the query, starts the inference and publish stages
    deactivate  stops both stages and unsubscribes (nothing is published); the models stay loaded
    cleanup     frees the models and the publishers

Parts (parts.py): text_stage, cameras (intake, frame scheduler, publish stage), inference, memory_stage,
best. Outputs: one row each in outputs.py. Stages hand over through LatestSlot (handover.py): newest wins.
"""
from __future__ import annotations

import threading
import time
from typing import List, Optional

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

import textregion_ros.srv as trsrv

from . import qos
from .best import BestAcrossCameras
from .camera import Camera
from .context import NodeContext
from .diagnostics import Stats, node_status
from .inference import InferenceStage
from .loading import StartupError, load_pipeline, release_models
from .memory_stage import MemoryStage, file_header
from .output_frame import OutputFrame
from .outputs import OUTPUTS, RANDOM_BANNER
from .param_callbacks import Parameters
from .parts import Parts
from .services import MAX_WAITING, Gate, GroundService, MemoryServices, NewestFrame
from .tf_buffer import make_lookup
from .text_stage import STANDING, VOCABULARY, TextStage

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


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
        self._served: List = []
        self.parts: Optional[Parts] = None  # built on configure, dropped on cleanup
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10,  # in every state
                                              event_callbacks=qos.QUIET)
        # Steady clock: with use_sim_time and no /clock the node's clock stands still (diagnostics say why).
        self.create_timer(1.0, self._publish_diagnostics, callback_group=self._group,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.last_failure = ""  # why the last configure failed
        self.finalized = threading.Event()  # the shutdown transition ran: main() leaves

    @property
    def pipeline(self):
        return self.ctx.pipeline

    @property
    def settings(self):
        return self.ctx.settings

    # --- transitions ---
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.params.check_startup()  # every rule, cross-knob and memory_file's too, before minutes of loading
            pipeline = self._given_pipeline or load_pipeline(self.params.config, self.get_logger())
        except StartupError as exc:
            self.last_failure = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            return FAILURE
        self.ctx.settings, self.ctx.pipeline = self.params.settings, pipeline
        self.ctx.random_weights = self.params.config.random_weights
        if self.ctx.random_weights:
            self.get_logger().warning(RANDOM_BANNER + " (random_weights:=true is for tests and benchmarks)")
        self.parts = self._build_parts()
        self.parts.text.start(self.ctx.settings.queries)
        return SUCCESS

    def _build_parts(self) -> Parts:
        ctx, s = self.ctx, self.ctx.settings
        self.pub_active = self.create_lifecycle_publisher(String, "active_query", qos.LATCHED)
        # Once the text stage has embedded the active query and it is in use, it is latched.
        text = TextStage(ctx, lambda query: self.pub_active.publish(String(data=query)))
        lookup = make_lookup(self, lambda reason, text: ctx.bad_input(reason, text, "transform")) \
            if s.target_frame or s.memory else None
        arrived = threading.Event()
        cameras = [Camera(name, ctx, OutputFrame(self, s.target_frame, s.tf_timeout, self.stats, lookup=lookup),
                          arrived) for name in (s.cameras or ("",))]
        self._create_publishers(cameras)
        memory = self._build_memory(lookup, cameras) if s.memory else None
        inference = InferenceStage(ctx, cameras, text, arrived)
        best = BestAcrossCameras(ctx, cameras, self._pubs) if len(cameras) > 1 else None
        waiting = Gate(MAX_WAITING)  # ground calls waiting for a frame, over every camera
        newest = {c.name: NewestFrame(c, inference, waiting) for c in cameras}
        self._served.append(self.create_service(trsrv.Ground, "ground", GroundService(ctx, newest),
                                                  qos_profile=qos.SERVICE, callback_group=self._group))
        return Parts(text, cameras, inference, memory, best)

    def _create_publishers(self, cameras: List[Camera]) -> None:
        """One publisher per row of the outputs table that this configuration publishes."""
        s, missing = self.ctx.settings, {}
        for row in OUTPUTS:
            if (row.stage == "memory" and not s.memory) or (row.stage == "cameras" and len(cameras) < 2):
                continue
            if not row.available():
                if row.enabled(s):
                    missing.setdefault(row.type_name.split("/")[0], []).append(row.name)
                continue
            if row.stage == "frame":
                for cam in cameras:
                    cam.publishers[row.name] = self.create_lifecycle_publisher(
                        row.msg_class(), cam.topic(row.name), row.depth, event_callbacks=qos.QUIET)
            else:
                self._pubs[row.name] = self.create_lifecycle_publisher(row.msg_class(), row.name, row.depth,
                                                                       event_callbacks=qos.QUIET)
        for package, names in missing.items():  # one line per missing optional package
            self.get_logger().info(f"{package} is not installed: {', '.join(names)} not published")

    def _build_memory(self, lookup, cameras: List[Camera]) -> MemoryStage:
        from std_srvs.srv import Trigger

        ctx = self.ctx
        memory = MemoryStage(ctx, self._pubs, lookup, file_header(self.params.config, ctx.pipeline, ctx.settings))
        memory.load()
        for cam in cameras:
            cam.publisher.memory = memory
        svc = MemoryServices(ctx, memory)
        self._served += [self.create_service(kind, name, handler, qos_profile=qos.SERVICE, callback_group=self._group)
                         for kind, name, handler in ((trsrv.Find, "find", svc.find),
                                                     (Trigger, "memory/save", svc.save),
                                                     (Trigger, "memory/clear", svc.clear))]
        return memory

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._subscribe()
        self.parts.start()
        result = super().on_activate(state)  # activates the lifecycle publishers
        self.pub_active.publish(String(data=self.parts.active_query))
        image = "image/compressed" if self.ctx.settings.compressed else "image"
        topics = [self.resolve_topic_name(cam.topic(image)) for cam in self.parts.cameras]
        for cam, topic in zip(self.parts.cameras, topics):
            cam.ctx.stats.set_flag("input_topic", topic)
            cam.ctx.stats.last_received = time.monotonic()  # the silence counts from activation
        self.get_logger().info(f"ready: waiting for images on {', '.join(topics)}; publish queries on "
                               f"{self.resolve_topic_name('query')} (std_msgs/String)")
        return result

    def _subscribe(self) -> None:
        s, g = self.ctx.settings, self._group
        image = (CompressedImage, "image/compressed") if s.compressed else (Image, "image")
        self._subs = [self.create_subscription(String, "query", self.parts.text.on_query, qos.QUERY,
                                               callback_group=g)]
        for cam in self.parts.cameras:
            cam.subscribe(self, image, qos.camera_qos(s.image_qos), g)

    def _unsubscribe(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        for cam in self.parts.cameras if self.parts is not None else []:
            cam.unsubscribe(self)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        self.parts.stop(save=True)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.parts.text.stop()
        cams = [p for c in self.parts.cameras for p in c.publishers.values()]
        for pub in list(self._pubs.values()) + cams + [self.pub_active]:
            self.destroy_lifecycle_publisher(pub)
        for svc in self._served:
            self.destroy_service(svc)
        self._pubs, self._served, self.parts = {}, [], None
        self.ctx.pipeline = None  # the models go with the last reference
        release_models()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_parts(save=True)
        self.finalized.set()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_parts(save=False)  # the memory is not saved from a node in error
        return SUCCESS

    def stop_parts(self, save: bool = False) -> None:
        """Stop every thread this node started (shutdown, Ctrl-C, destroy_node); safe in any state."""
        self._unsubscribe()
        if self.parts is not None:
            self.parts.stop(save=save, text=True)

    # --- parameters and queries ---
    def _apply(self, runtime: dict, text: dict, standing) -> None:
        """post_set: settings are read by every part from ctx; pipeline and text knobs go to their stage."""
        self.ctx.settings = self.params.settings
        if self.parts is None:
            return  # unconfigured: configure reads the parameters
        for cam in self.parts.cameras:  # a named camera's context is a copy with its own counters
            cam.ctx.settings = self.params.settings
        if runtime:
            self.parts.inference.updates.put(runtime)
        cfg = self.params.config
        if text:
            self.parts.text.submit(VOCABULARY, (cfg.vocabulary, cfg.background))
        if standing is not None:
            self.parts.text.submit(STANDING, standing)

    def _publish_diagnostics(self) -> None:  # the node's steady 1 Hz timer: also ends image pauses
        cameras = self.parts.cameras if self.parts is not None else []
        for cam in cameras:
            if cam.intake.guard is not None:
                cam.intake.guard.tick()
        self.pub_diag.publish(node_status(self.stats, cameras, self.ctx.pipeline,
                                          self._state_machine.current_state[1], self.get_clock().now().to_msg(),
                                          self.get_fully_qualified_name()))

    def destroy_node(self):
        self.stop_parts(save=True)  # Ctrl-C: the memory is kept like on a shutdown transition
        return super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    from .run import run

    return run(TextRegionNode, args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
