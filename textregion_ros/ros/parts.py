"""The node's running parts in one place: the text stage, the cameras (each with its intake, scheduler and
publish stage), the inference stage, the memory stage and the across-camera output. The node builds them on
configure and drops them on cleanup; tests, benchmarks and services observe them here.
"""
from __future__ import annotations

from typing import List

from .camera import Camera


class Parts:
    def __init__(self, text, cameras: List[Camera], inference, memory=None, best=None):
        self.text, self.cameras, self.inference, self.memory, self.best = text, cameras, inference, memory, best

    def camera(self, name: str = "") -> Camera:
        """A camera's part by name ("" = the first: the unnamed default of a single-camera node)."""
        return next(c for c in self.cameras if c.name == name) if name else self.cameras[0]

    @property
    def active_query(self) -> str:
        return self.text.queries.active if self.text is not None and self.text.queries else ""

    @property
    def frames(self):
        """Where the first camera's 3D outputs go (target_frame through tf2); tests stand in their own."""
        return self.camera().publisher.frames

    @frames.setter
    def frames(self, frames) -> None:
        self.camera().publisher.frames = frames

    def idle(self) -> bool:
        """No frame waiting, none in inference, none being published, on any camera."""
        return all(c.idle() for c in self.cameras)

    def inferring(self) -> bool:
        """The inference stage is inside a frame."""
        return any(c.intake.slot.busy for c in self.cameras)

    def text_idle(self) -> bool:
        return not self.text.busy()

    def stages(self) -> list:
        return [self.text, self.inference] + [c.publisher for c in self.cameras] + (
            [self.memory] if self.memory is not None else [])

    def alive(self) -> bool:
        return all(p.alive for p in self.stages())

    def has_depth(self, t_ns: int, camera: str = "") -> bool:
        return self.camera(camera).intake.has_depth(t_ns)

    def start(self) -> None:
        """Activate: the memory, the cameras' slots, then inference and publishing."""
        if self.memory is not None:
            self.memory.slot.reopen()
            self.memory.start()
        for cam in self.cameras:
            cam.reopen()
        self.inference.start()
        for cam in self.cameras:
            cam.publisher.start()

    def stop(self, save: bool, text: bool = False) -> None:
        """Stop the frame stages (safe twice), and the text stage with ``text``; with ``save``, the memory is
        kept in its file (deactivate, shutdown, Ctrl-C; not after an error)."""
        for part in (self.inference, *(c.publisher for c in self.cameras)) + ((self.text,) if text else ()):
            part.stop()
        for cam in self.cameras:
            cam.intake.reset()
            cam.publisher.last = None  # a service never answers on a frame from before a deactivate
        if self.memory is not None:
            self.memory.stop(save=save)
