"""One camera's part of the node: its inputs, its frame slot, depth matching, tracks and locks, its
publish stage and publishers, its frame scheduler (frames/: full, target or propagated), and its own counters.

The models, the text cache, the vocabulary and the queries are the node's and shared by every camera.
The default is one unnamed camera on the node's own topic names (``image``, ``regions``, ...); a
named camera has them under ``<name>/`` (``head/image``, ``head/regions``, ...), so each stays
remappable on its own.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Dict

from rclpy.event_handler import SubscriptionEventCallbacks
from sensor_msgs.msg import CameraInfo, Image

from .context import NodeContext
from .diagnostics import Stats
from .flood_guard import FloodGuard
from .handover import LatestSlot
from .intake import Intake
from .publish import PublishStage
from .tracks import Tracks
from ..frames.carry import SamCarry
from ..frames.schedule import FrameScheduler


class Camera:
    def __init__(self, name: str, node_ctx: NodeContext, output_frame, arrived: threading.Event):
        self.name = name
        self.prefix = f"{name}/" if name else ""
        # A named camera counts on its own (diagnostics and bad_input/* per camera); the unnamed default shares
        # the node's counters, so a single-camera node reads as it always has.
        self.ctx = dataclasses.replace(node_ctx, stats=Stats()) if name else node_ctx
        self.intake = Intake(self.ctx, arrived)
        self.tracks = Tracks(self.ctx)
        self.slot = LatestSlot()  # inference -> this camera's publish stage
        self.publishers: Dict[str, object] = {}
        pipe = node_ctx.pipeline
        carry = SamCarry(pipe.propagator, pipe.device) if getattr(pipe, "propagator", None) is not None else None
        self.schedule = FrameScheduler(carry)  # each frame's kind: full, target or propagated (frames/)
        self.publisher = PublishStage(self.ctx, self.tracks, self.publishers, output_frame, self.slot, self.intake,
                                      name, self.schedule)
        self.demand = threading.Event()  # a service call: this camera's next frame is processed for it
        self.last_start = 0.0  # when its last frame went into inference (its own max_rate)
        self.subs: list = []  # depth and camera_info while active; the image's is the guard's

    def subscribe(self, node, image: tuple, cam_qos, group) -> None:
        """Its image (through a FloodGuard), depth and camera_info subscriptions, on activate."""
        intake = self.intake
        ev = SubscriptionEventCallbacks(incompatible_qos=intake.on_incompatible_qos)
        make = lambda kind, name, cb: node.create_subscription(  # noqa: E731
            kind, self.topic(name), cb, cam_qos, callback_group=group, event_callbacks=ev)
        intake.guard = FloodGuard(self.ctx, lambda: make(image[0], image[1], intake.on_image),
                                  node.destroy_subscription, node.resolve_topic_name(self.topic(image[1])))
        intake.guard.open()
        self.subs = [make(Image, "depth", intake.on_depth), make(CameraInfo, "camera_info", intake.on_camera_info)]

    def unsubscribe(self, node) -> None:
        if self.intake.guard is not None:
            self.intake.guard.close()
        for sub in self.subs:
            node.destroy_subscription(sub)
        self.subs = []

    def topic(self, name: str) -> str:
        return self.prefix + name

    def idle(self) -> bool:
        return self.intake.slot.idle() and self.slot.idle()

    def reopen(self) -> None:
        self.intake.slot.reopen()
        self.slot.reopen()
