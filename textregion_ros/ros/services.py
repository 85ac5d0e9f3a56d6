"""The ground service: a query answered on the newest full frame.

While outputs have readers, the newest published frame answers at once. While none has (the
inference stage idles) or nothing was processed yet, the call is a consumer: the newest received
frame is processed for it, and the reply says which frame that was and how old.
"""
from __future__ import annotations

import threading

import textregion_ros.msg as trmsg
from builtin_interfaces.msg import Time

from ..compose import region_crop
from ..labels import LabelError, normalize_query
from ..results import Grounding
from . import messages
from .context import NodeContext

GROUND_WAIT_S = 30.0  # longest a call waits for its frame (a 2-core CPU takes ~5 s per frame)
# Calls that may wait for a frame at once: each holds an executor thread (4), and the camera callbacks need one.
MAX_WAITING = 2


class Gate:
    """At most ``limit`` calls inside at once; one more is shed (answered "busy" at once, and counted), so a burst
    never holds every executor thread and every caller gets an answer."""

    def __init__(self, limit: int):
        self._free = threading.BoundedSemaphore(limit)

    def enter(self) -> bool:
        return self._free.acquire(blocking=False)

    def leave(self) -> None:
        self._free.release()


class NewestFrame:
    """The frame a service answers on, for one camera: the newest published, or the newest received, processed
    on demand."""

    def __init__(self, camera, inference, waiting: Gate):
        self.camera, self.inference, self.waiting = camera, inference, waiting
        self.intake, self.publisher = camera.intake, camera.publisher

    def __call__(self, timeout: float = GROUND_WAIT_S):
        """-> ((Processed, FrameOutputs) or None, why there is none)."""
        if not self.inference.alive:  # inactive: nothing runs, and a frame from before is not an answer
            return None, "the node is not active (activate it: ros2 lifecycle set <node> activate)"
        last = self.publisher.last  # cleared on deactivate: never a frame from before
        if self.publisher.wanted() and last is not None:
            return last, ""  # consuming: the newest published frame is current
        newest = self.intake.latest_stamp()
        if newest is None or (last is not None and last[0].stamp_ns >= newest):
            # no image has arrived at all, or the newest is the one already answered on
            return last, "" if last is not None else "no camera frame has arrived yet"
        if not self.waiting.enter():  # shed: every thread it could take is already waiting for a frame
            self.camera.ctx.stats.count("shed/ground")
            return None, f"busy: {MAX_WAITING} calls are already waiting for a frame; call again"
        try:
            self.camera.demand.set()
            self.intake.offer_latest()
            last = self.publisher.wait_last(newest, timeout)
        finally:
            self.waiting.leave()
        return last, "" if last is not None else f"no frame was processed within {timeout:.0f} s"


def answered(ctx: NodeContext, name: str, handler, request, response):
    """Run a service handler; an exception is our fault (requests are validated first): answer anyway."""
    try:
        return handler(request, response)
    except Exception as exc:
        ctx.stats.count("errors/service")
        ctx.logger.error(f"{name} failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
        response.success, response.message = False, f"internal error: {type(exc).__name__}"
        return response


def checked_query(ctx: NodeContext, text: str, response) -> str:
    """The normalized query, or "" with the response's refusal filled in (counted when it is bad input)."""
    try:
        query = normalize_query(text)
    except LabelError as exc:
        ctx.stats.count("bad_input/query")
        response.success, response.message = False, f"rejected query: {exc}"
        return ""
    if not query:
        response.success, response.message = False, "empty query"
    return query


class GroundService:
    def __init__(self, ctx: NodeContext, newest):
        self.ctx = ctx
        self.newest = newest  # camera name -> NewestFrame: () -> (Processed, FrameOutputs) or None

    def __call__(self, request, response):
        return answered(self.ctx, "ground", self._ground, request, response)

    def _ground(self, request, response):
        query = checked_query(self.ctx, request.query, response)
        if not query:
            return response
        camera = request.camera.strip()
        if camera and camera not in self.newest:
            self.ctx.stats.count("bad_input/camera")
            named = sorted(n for n in self.newest if n)
            response.success = False
            response.message = (f"no camera {camera!r}; cameras: {named}" if named else
                                f"no camera {camera!r}: this node has one unnamed camera (leave camera empty)")
            return response
        pipeline = self.ctx.pipeline
        names = [camera] if camera else list(self.newest)
        embedded = pipeline.embed_queries([query]) if pipeline is not None else None
        tried = [self._answer(pipeline, embedded, n) for n in names] if pipeline is not None else []
        answers = [a for a, _ in tried if a is not None]
        if not answers:
            why = sorted({w for _, w in tried if w}) or ["the node is not configured"]
            response.success, response.message = False, "; ".join(why)
            return response
        # Over several cameras: the found answer of highest score, else the highest score (it abstains).
        item, out, g = max(answers, key=lambda a: (a[2].found, a[2].prob))
        response.frame_stamp = Time(sec=item.stamp_ns // 10**9, nanosec=item.stamp_ns % 10**9)
        response.frame_age_s = max((self.ctx.now_ns() - item.stamp_ns) * 1e-9, 0.0)
        result = item.result
        crop = region_crop(result, g.region) if request.include_mask and g.region >= 0 else None
        response.result = messages.grounded_msg(trmsg, result.labels, out, g, item.header,
                                                with_mask=bool(request.include_mask), crop=crop)
        response.camera = item.camera
        response.success = True
        response.message = "found" if g.found else "not found (abstained)"
        return response

    def _answer(self, pipeline, embedded, camera: str):
        """((item, outputs, Grounding) of ``embedded`` (one query) on this camera's newest frame, or None, why)."""
        last, why = self.newest[camera]()
        if last is None:
            return None, why
        item, out = last
        max_age = self.ctx.settings.max_age
        age = (self.ctx.now_ns() - item.stamp_ns) * 1e-9
        if max_age > 0 and age > max_age:  # the same rule as the frames the node processes
            return None, f"the newest frame is {age:.1f} s old, above max_age ({max_age:g} s)"
        result = item.result
        region, prob, cos, margin, found = (t.float().cpu() for t in pipeline.ground(
            result.tokens, embedded, result.vocab))
        g = Grounding(embedded.labels[0], int(region[0]), float(prob[0]), float(cos[0]), float(margin[0]),
                      bool(found[0]), result.track_id_of(int(region[0])))
        return (item, out, g), ""


FIND_DEFAULT_RESULTS, FIND_MAX_RESULTS = 10, 1000


class MemoryServices:
    """find (text -> ranked remembered objects), memory/save and memory/clear."""

    def __init__(self, ctx: NodeContext, stage):
        self.ctx, self.stage = ctx, stage
        self.saving = Gate(1)  # one save writes at a time; a save asked for meanwhile is told so at once

    def find(self, request, response):
        return answered(self.ctx, "find", self._find, request, response)

    def _find(self, request, response):
        from .memory_messages import object_msg

        query = checked_query(self.ctx, request.query, response)
        if not query:
            return response
        limit = min(int(request.max_results) or FIND_DEFAULT_RESULTS, FIND_MAX_RESULTS)
        ranked = self.stage.find(query, limit)
        with self.stage.lock:  # the stage may be fusing: read each object once, consistently
            response.objects = [object_msg(trmsg, o, p) for o, p, _ in ranked]
            response.header = self.stage.last_header
        threshold = self.ctx.pipeline.config.abstain_threshold
        response.found = bool(ranked) and ranked[0][1] >= threshold
        response.success = True
        response.message = ("nothing is remembered yet" if not ranked else
                            "found" if response.found else f"not found (abstained: best score {ranked[0][1]:.2f} "
                                                           f"< abstain_threshold {threshold})")
        return response

    def save(self, request, response):
        if not self.saving.enter():
            self.ctx.stats.count("shed/memory_save")
            response.success, response.message = False, "busy: a save is being written now; call again"
            return response
        try:
            path = self.stage.save()
            response.success = path is not None
            response.message = f"saved {len(self.stage.memory)} objects to {path}" if path else "memory_file is not set"
        except OSError as exc:  # the disk, not us: say so, the previous file stays whole
            self.ctx.stats.count("memory/save_failed")
            response.success, response.message = False, f"could not save: {exc}"
        finally:
            self.saving.leave()
        return response

    def clear(self, request, response):
        n = self.stage.clear()
        response.success, response.message = True, f"forgot {n} objects"
        return response
