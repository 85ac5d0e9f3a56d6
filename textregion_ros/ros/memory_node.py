"""textregion_memory: the object memory in a lifecycle node and process of its own.

The perception node publishes each full frame's ``observation`` (observation.py); this node looks up the
camera's pose in ``memory_frame`` at the frame's stamp, fuses (memory_stage.py, the same stage the perception
node runs in-process with ``memory:=true``), publishes memory/*, and serves ``find``, ``memory/save`` and
``memory/clear``. Its Python (TF, back-projection, association, messages) then never waits for the GIL beside
the perception node's GPU pipeline. Several perception nodes, or robots, feed one memory node through
``memory_sources``: DDS carries the observations.

    unconfigured --configure--> inactive --activate--> active
    configure   validates the parameters, loads the text tower (for find), loads memory_file
    activate    subscribes to the observation topics, starts fusing
    deactivate  unsubscribes and saves memory_file; cleanup frees the text tower

It takes the perception node's params file: the same knob table, of which it reads the memory_* knobs, tf_*,
the encoder (which tokens it accepts) and the vocabulary's background (find's rule is grounding's).
"""
from __future__ import annotations

import dataclasses
import threading
from typing import List, Optional

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

import textregion_ros.msg as trmsg
import textregion_ros.srv as trsrv

from . import qos
from .context import NodeContext
from .diagnostics import Stats, node_status
from .loading import StartupError, load_find_scores, release_models
from .memory_stage import MemoryStage, file_header
from .observation import ObservationError, encoder_id, memory_frame
from .outputs import MEMORY_OUTPUTS
from .param_callbacks import Parameters
from .services import MemoryServices
from .tf_buffer import make_lookup

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
OBSERVATION_DEPTH = 5  # observations queued per source while the stage fuses (the stage keeps the newest)


class MemoryNode(LifecycleNode):
    def __init__(self, scores=None, **kwargs):
        super().__init__("textregion_memory", **kwargs)
        self.stats = Stats()
        self.params = Parameters(self, lambda *_: self._apply())
        self.ctx = NodeContext(self.get_logger(), self.stats, lambda: self.get_clock().now().nanoseconds,
                               self._settings())
        self._given = scores  # tests share the perception node's models (a Pipeline offers the same members)
        self._group = ReentrantCallbackGroup()
        self._subs: List = []
        self._pubs: dict = {}
        self._served: List = []
        self.stage: Optional[MemoryStage] = None
        self.accepts = ("", 0)  # (encoder id, token size) of the observations fused
        self.last_failure = ""
        self.finalized = threading.Event()
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10, event_callbacks=qos.QUIET)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=self._group,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _settings(self):
        return dataclasses.replace(self.params.settings, memory=True)  # this node is the memory

    def _apply(self) -> None:
        self.ctx.settings = self._settings()  # memory_* knobs reach the stage at its next frame

    @property
    def memory(self):
        return self.stage.memory if self.stage is not None else None

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.params.check_startup()
            given = self._given
            scores = given if given is not None else load_find_scores(self.params.config, self.get_logger())
        except StartupError as exc:
            self.last_failure = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            return FAILURE
        ctx = self.ctx
        ctx.settings, ctx.pipeline, ctx.random_weights = self._settings(), scores, self.params.config.random_weights
        header = file_header(self.params.config, scores, ctx.settings)
        self.accepts = (encoder_id(self.params.config), header["token_dim"])
        for row in MEMORY_OUTPUTS:
            self._pubs[row.name] = self.create_lifecycle_publisher(row.msg_class(), row.name, row.depth,
                                                                   event_callbacks=qos.QUIET)
        lookup = make_lookup(self, lambda reason, text: ctx.bad_input(reason, text, "transform"))
        self.stage = MemoryStage(ctx, self._pubs, lookup, header)
        self.stage.load()
        svc = self._services_for(self.stage)
        self._served = [self.create_service(kind, name, handler, qos_profile=qos.SERVICE, callback_group=self._group)
                        for kind, name, handler in svc]
        return SUCCESS

    def _services_for(self, stage):
        from std_srvs.srv import Trigger

        svc = MemoryServices(self.ctx, stage)
        return ((trsrv.Find, "find", svc.find), (Trigger, "memory/save", svc.save), (Trigger, "memory/clear", svc.clear))

    def sources(self) -> List[str]:
        s = self.ctx.settings
        return list(s.memory_sources) or [f"{c}/observation" for c in s.cameras] or ["observation"]

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._subs = [self.create_subscription(trmsg.Observation, topic, self.on_observation, OBSERVATION_DEPTH,
                                               callback_group=self._group) for topic in self.sources()]
        self.stage.slot.reopen()
        self.stage.start()
        names = ", ".join(self.resolve_topic_name(t) for t in self.sources())
        self.get_logger().info(f"ready: fusing observations from {names} in {self.ctx.settings.memory_frame}")
        return super().on_activate(state)

    def on_observation(self, msg) -> None:
        if self.stage is None:
            return
        try:
            frame = memory_frame(msg, *self.accepts)
        except ObservationError as exc:
            self.ctx.bad_input(exc.reason, str(exc), "observation")
            return
        self.stats.count("received")
        self.stage.put(frame)

    def _unsubscribe(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        self.stage.stop(save=True)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        for svc in self._served:
            self.destroy_service(svc)
        self._pubs, self._served, self.stage = {}, [], None
        self.ctx.pipeline = None
        release_models()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_parts(save=True)
        self.finalized.set()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_parts(save=False)
        return SUCCESS

    def stop_parts(self, save: bool = False) -> None:
        self._unsubscribe()
        if self.stage is not None:
            self.stage.stop(save=save)

    def _publish_diagnostics(self) -> None:
        self.pub_diag.publish(node_status(self.stats, [], self.ctx.pipeline, self._state_machine.current_state[1],
                                          self.get_clock().now().to_msg(), self.get_fully_qualified_name()))

    def destroy_node(self):
        self.stop_parts(save=True)
        return super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    from .run import MEMORY_BLAS_THREADS, run

    return run(MemoryNode, args, blas_threads=MEMORY_BLAS_THREADS)


if __name__ == "__main__":
    import sys

    sys.exit(main())
