"""The ground service: a query answered on the newest full frame, without waiting for the next."""
from __future__ import annotations

import textregion_ros.msg as trmsg

from ..compose import region_crop
from ..labels import LabelError, normalize_query
from ..results import Grounding
from . import messages
from .context import NodeContext


class GroundService:
    def __init__(self, ctx: NodeContext, last_frame):
        self.ctx = ctx
        self.last_frame = last_frame  # () -> (Processed, FrameOutputs) or None

    def __call__(self, request, response):
        try:
            return self._ground(request, response)
        except Exception as exc:  # our fault: requests are validated first; answer anyway
            self.ctx.stats.count("errors/service")
            self.ctx.logger.error(f"ground failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
            response.success, response.message = False, f"internal error: {type(exc).__name__}"
            return response

    def _ground(self, request, response):
        try:
            query = normalize_query(request.query)
        except LabelError as exc:
            self.ctx.stats.count("bad_input/query")
            response.success, response.message = False, f"rejected query: {exc}"
            return response
        if not query:
            response.success, response.message = False, "empty query"
            return response
        pipeline = self.ctx.pipeline
        last = self.last_frame() if pipeline is not None else None
        if last is None:
            response.success, response.message = False, "no frame has been processed yet"
            return response
        item, out = last
        result = item.result
        region, prob, cos, margin, found = (t.float().cpu() for t in pipeline.ground(
            result.tokens, pipeline.embed_queries([query]), result.vocab))
        g = Grounding(query, int(region[0]), float(prob[0]), float(cos[0]), float(margin[0]), bool(found[0]),
                      result.track_id_of(int(region[0])))
        crop = region_crop(result, g.region) if request.include_mask and g.region >= 0 else None
        response.result = messages.grounded_msg(trmsg, result.labels, out, g, item.header,
                                                with_mask=bool(request.include_mask), crop=crop)
        response.success = True
        response.message = "found" if g.found else "not found (abstained)"
        return response
