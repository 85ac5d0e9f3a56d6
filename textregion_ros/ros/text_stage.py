"""The text stage: vocabulary, standing queries and the active query -> embeddings, off the executor.

Jobs of one kind replace each other (the newest vocabulary wins); each finished job swaps its
result in as one object, so a frame in flight keeps the vocabulary and queries it started with,
and a 1000-label vocabulary never stalls frames or callbacks.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from ..encoders.text import LabelEmbeddings
from ..labels import LabelError, normalize_query
from .context import NodeContext
from .stage import Stage

VOCABULARY, STANDING, ACTIVE = "vocabulary", "queries", "active"


@dataclass(frozen=True)
class QuerySet:
    """Standing queries then the active one, with their embeddings: swapped as one object."""
    standing: Tuple[str, ...]
    active: str
    embeddings: LabelEmbeddings

    @property
    def texts(self) -> Tuple[str, ...]:
        return self.standing + ((self.active,) if self.active else ())


class TextStage(Stage):
    def __init__(self, ctx: NodeContext, on_active: Callable[[str], None]):
        super().__init__(ctx, "textregion-text")
        self.on_active = on_active  # called with the active query once it is in use
        self._cv = threading.Condition()
        self._jobs: Dict[str, Any] = {}
        self._busy = False
        self.queries: Optional[QuerySet] = None
        self._logged = ""

    def start(self, standing: Tuple[str, ...]) -> None:
        """Configure: embed the standing queries now (so the first frame has them), then run the thread."""
        self.queries = QuerySet(tuple(standing), "", self.ctx.pipeline.embed_queries(tuple(standing)))
        super().start()

    def _wake(self) -> None:
        with self._cv:
            self._jobs.clear()
            self._cv.notify_all()

    def on_query(self, msg) -> None:
        """The query topic (executor thread): validate, then embed here, off the executor."""
        try:
            text = normalize_query(msg.data)
        except LabelError as exc:
            self.ctx.bad_input("query", f"{exc}; keeping {self.queries.active!r}", "query")
            return
        self.submit(ACTIVE, text)

    def submit(self, kind: str, payload) -> None:
        with self._cv:
            self._jobs[kind] = payload  # the newest request of a kind replaces an older one
            self._cv.notify()
        self.ctx.stats.set_flag("vocabulary_pending", "true")

    def busy(self) -> bool:
        """Something is waiting or being embedded."""
        with self._cv:
            return bool(self._jobs) or self._busy

    def _next(self) -> Optional[Tuple[str, Any]]:
        with self._cv:
            self._cv.wait_for(lambda: not self.worker.running or bool(self._jobs))
            if not self.worker.running:
                return None
            kind = next(iter(self._jobs))
            self._busy = True
            return kind, self._jobs.pop(kind)

    def _loop(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            try:
                self._run(*job)
            except Exception as exc:  # our fault: inputs were validated before submission
                self.ctx.stats.count("errors/text")
                self.ctx.logger.error(f"embedding {job[0]} failed: {type(exc).__name__}: {exc}")
            finally:
                with self._cv:
                    self._busy = False
                    if not self._jobs:
                        self.ctx.stats.set_flag("vocabulary_pending", "false")
                    self._cv.notify_all()

    def _run(self, kind: str, payload) -> None:
        pipeline = self.ctx.pipeline
        t0 = time.perf_counter()
        if kind == VOCABULARY:
            vocab = pipeline.prepare_vocabulary(*payload)  # the slow part, outside the lock
            with self.ctx.config_lock:
                pipeline.config = pipeline.config.replace(vocabulary=payload[0], background=payload[1])
                pipeline.use_vocabulary(vocab)
            self.ctx.logger.info(f"vocabulary ready: {len(vocab.labels)} labels embedded in "
                                 f"{time.perf_counter() - t0:.1f} s")
            return
        cur = self.queries
        standing = tuple(payload) if kind == STANDING else cur.standing
        active = payload if kind == ACTIVE else cur.active
        self.queries = QuerySet(standing, active, pipeline.embed_queries(standing + ((active,) if active else ())))
        if kind == ACTIVE:
            self.on_active(active)
            if active != self._logged:  # a client that republishes its query every second is not news
                self._logged = active
                self.ctx.logger.info(f"active query: {active!r}" if active else "query cleared")
