"""The memory stage: feeds the object memory from each full frame and publishes what it remembers.

The publish stage offers every full frame (its tracked regions' tokens, labels, instance map and
matched depth) through a LatestSlot; this stage looks up the camera's pose in ``memory_frame`` at
the frame's stamp, back-projects each region's depth, fuses, and builds the memory rows of the
outputs table. A frame without a transform at its stamp is counted (``memory/no_transform``) and
never fused with a guessed pose. Regions labelled as background are not remembered.

Persistence follows the lifecycle: ``memory_file`` is loaded on configure and saved atomically on
a timer, on deactivate and on shutdown. A file that cannot be used is refused with its reason and
left untouched; the memory then comes from ``<memory_file>.recovered.npz`` when that loads (or starts
empty) and saves go there, so nothing in the refused file is ever overwritten and what was gathered after
the refusal comes back at the next start.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from std_msgs.msg import Header

from ..memory import Detection, MemoryFileError, ObjectMemory, Observation, save_memory
from ..memory.persist import open_memory
from .context import NodeContext
from .convert import ImageError, depth_to_meters
from .observation import MemoryFrame, encoder_id, region_points
from .output_frame import header_in
from .handover import LatestSlot
from .memory_messages import MemoryView, MessageCache
from .outputs import MEMORY_OUTPUTS, listening
from .settings import memory_config
from .stage import SlotStage
from .tf_buffer import TransformUnavailable



def file_header(config, pipeline, settings) -> Dict[str, Any]:
    """What a memory file must have been written with to be loaded: the encoder, its token size, the frame."""
    return {"encoder": encoder_id(config),
            "token_dim": int(pipeline.fallback_background.embeddings.shape[-1]), "frame": settings.memory_frame}


class MemoryStage(SlotStage):
    def __init__(self, ctx: NodeContext, publishers: Dict[str, Any], lookup, header_info: Dict[str, Any]):
        super().__init__(ctx, "textregion-memory", LatestSlot(), "memory", 0.2)
        self.publishers, self.lookup = publishers, lookup
        self.expected = header_info  # encoder, token_dim, frame: what a memory file must have been written with
        self.memory = ObjectMemory(memory_config(ctx.settings))
        self.lock = threading.Lock()  # the stage fuses while services query
        self.save_path = os.path.expanduser(ctx.settings.memory_file)
        self.last_header = Header(frame_id=ctx.settings.memory_frame)
        self._last_save = time.monotonic()
        self.messages = MessageCache()  # per-object messages, rebuilt only for objects that changed
        self._published: Dict[str, float] = {}  # output -> when it was last published (monotonic)
        self._held: set = set()  # outputs whose newest state waits for their period
        self._last_query = ""

    def stop(self, save: bool = False) -> None:
        """Stop the stage; with ``save``, keep the memory in its file (deactivate, shutdown, Ctrl-C)."""
        super().stop()
        if save:
            try:
                self.save()
            except OSError as exc:
                self.ctx.logger.error(f"memory: could not save: {exc}")

    # --- from the publish stage ---
    def offer(self, item, out) -> None:
        result = item.result
        if out.instance is None or item.depth is None or item.K is None or not len(result):
            self.ctx.stats.count("memory/no_depth")  # nothing to place in 3D
            return
        labels = [result.labels[int(i)] for i in out.label]
        background = out.label >= len(result.labels) - result.num_background
        tids = result.track_ids if result.track_ids is not None else np.zeros(len(result), np.uint32)
        frame = MemoryFrame(item.header, item.stamp_ns, result.tokens.float().cpu().numpy(), labels,
                            np.asarray(out.prob, np.float64), np.asarray(background), tids, out.instance.copy(),
                            item.depth, item.K, item.queries.active, boxes=np.asarray(out.boxes, np.float64),
                            pixels=np.asarray(out.area, np.int64))
        self.put(frame)

    def put(self, frame: MemoryFrame) -> None:
        """A frame to fuse: from this process's publish stage, or an observation (memory_node.py)."""
        if self.slot.put(frame):
            self.ctx.stats.count("memory/dropped")  # fusing fell behind: the newest frame wins

    # --- the stage ---
    def handle(self, frame: Optional[MemoryFrame]) -> None:
        if frame is not None:
            self.fuse(frame)
        elif self._held:
            self._publish(self._last_query, only=self._held)
        self._maybe_save()

    def fuse(self, frame: MemoryFrame) -> None:
        s = self.ctx.settings
        start = time.perf_counter()
        try:
            pose = self.lookup.lookup(s.memory_frame, frame.header.frame_id, frame.stamp_ns, s.tf_timeout)
        except TransformUnavailable as exc:
            self.ctx.warn("memory/no_transform", f"memory: no transform {frame.header.frame_id} -> {s.memory_frame} "
                                                 f"at the frame's stamp ({exc}); the frame is not fused")
            return
        if frame.points is not None:  # an observation: back-projected by the perception node
            depth, points = frame.depth_m, frame.points
        else:
            try:
                depth = depth_to_meters(frame.depth)
            except ImageError:
                return  # the publish stage counted it
            points = region_points(frame.instance, depth, frame.K, s.depth_stride)
        dets = self._detections(frame, points, pose)
        obs = Observation(frame.stamp_ns, frame.header.frame_id, pose, frame.K, depth, dets)
        t0, cpu0 = time.perf_counter(), time.thread_time()
        with self.lock:
            self.memory.config = memory_config(s)  # runtime memory_* knobs apply from this frame
            self.memory.integrate(obs)
            self.last_header = header_in(frame.header, s.memory_frame)
            self.ctx.stats.set_flag("memory_objects", str(len(self.memory)))
        fuse_s, fuse_cpu_s = time.perf_counter() - t0, time.thread_time() - cpu0
        self.ctx.stats.count("memory/fused")
        self.ctx.stats.count("memory/detections", len(dets))
        self._publish(frame.query)
        self.ctx.stats.on_memory(fuse_s, time.perf_counter() - start, fuse_cpu_s)

    def _detections(self, frame: MemoryFrame, points: Dict[int, np.ndarray], pose) -> List[Detection]:
        """Every region not labelled background, with its points in memory_frame (maybe none: seen with too
        little depth, it still names its object by its box) and its footprint."""
        dets = []
        none = np.zeros((0, 3))
        for r in range(len(frame.labels)):
            if frame.background[r]:
                continue
            t = frame.tokens[r]
            box = tuple(float(b) for b in frame.boxes[r]) if frame.boxes is not None else None
            dets.append(Detection(t / max(np.linalg.norm(t), 1e-12), pose.points(points.get(r, none)),
                                  frame.labels[r], float(frame.scores[r]), int(frame.track_ids[r]), box,
                                  int(frame.pixels[r]) if frame.pixels is not None else 0))
        return dets

    # --- queries and outputs ---
    def find(self, query: str, limit: int):
        """Remembered objects for ``query``, best first: [(object, probability, cosine)], scored like grounding."""
        pipeline = self.ctx.pipeline
        queries = pipeline.embed_queries([query])  # outside the lock: an unseen query is encoded here
        with self.lock:
            ids, tokens = self.memory.tokens()
            if not len(self.memory):
                return []
            probs, cos = pipeline.query_scores(torch.from_numpy(tokens).to(pipeline.device), queries)
            return self.memory.rank(ids, probs[:, 0].float().cpu().numpy(), cos[:, 0].float().cpu().numpy(), limit)

    def _publish(self, query: str, only=None) -> None:
        """The memory outputs someone reads, those with a period once it has passed (``only``: just these). A
        row held back by its period is published when it comes due (_loop), so the last state always goes out."""
        now = time.monotonic()
        reading = [r for r in MEMORY_OUTPUTS if (only is None or r.name in only)
                   and listening(r, self.publishers, self.ctx.settings)]
        rows = [r for r in reading if self._due(r, now)]
        self._held = {r.name for r in reading} - {r.name for r in rows}
        self._last_query = query
        if not rows:
            return
        for r in rows:
            self._published[r.name] = now
        grounded = None
        if query and any(r.name == "memory/grounded" for r in rows):
            ranked = self.find(query, 1)
            if ranked and ranked[0][1] >= self.ctx.pipeline.config.abstain_threshold:
                grounded = ranked[0][0]
        with self.lock:
            view = MemoryView(list(self.memory.objects.values()), self.last_header, grounded,
                              self.ctx.settings.max_cloud_points, self.messages)
            msgs = [(r.name, r.build(view)) for r in rows]
        for name, msg in msgs:
            if msg is not None:
                self.publishers[name].publish(msg)

    def _due(self, row, now: float) -> bool:
        """A row with a period (``every``) is published when that long has passed since its last publication."""
        period = float(getattr(self.ctx.settings, row.every)) if row.every else 0.0
        return now - self._published.get(row.name, -np.inf) >= period

    # --- persistence ---
    def load(self) -> None:
        """On configure: the memory from ``memory_file`` or, after a refusal, from its recovered file, which
        saves then go to (memory/persist.py: open_memory). A refused file is counted, named and left untouched."""
        path = self.save_path
        if not path:
            return
        try:
            with self.lock:
                self.save_path, loaded, refused = open_memory(path, self.expected, self.memory)
        except MemoryFileError as exc:
            self.save_path = ""
            self.ctx.stats.count("bad_input/memory_file")
            self.ctx.logger.error(f"memory: {exc}. The memory starts empty and is not saved")
            return
        for bad, reason in refused:
            self.ctx.stats.count("bad_input/memory_file")
            self.ctx.logger.error(f"memory: refused {bad}: {reason}. It is left untouched")
        if loaded:
            self.ctx.logger.info(f"memory: loaded {len(self.memory)} objects from {loaded}")
        if self.save_path != path:
            self.ctx.logger.warning(f"memory: saved to {self.save_path} instead of {path}, which was refused; "
                                    f"the next start loads it from there again")

    def save(self) -> Optional[str]:
        """-> the path written, or None when no memory_file is set."""
        if not self.save_path:
            return None
        with self.lock:
            save_memory(self.save_path, self.memory, self.expected)
        self._last_save = time.monotonic()
        self.ctx.stats.count("memory/saved")
        return self.save_path

    def _maybe_save(self) -> None:
        every = self.ctx.settings.memory_save_every
        if every > 0 and time.monotonic() - self._last_save >= every:
            self.save()

    def clear(self) -> int:
        with self.lock:
            n = len(self.memory)
            self.memory.clear()
        return n


__all__ = ["MemoryFrame", "MemoryStage", "file_header"]
