"""What one processed frame yields, kept as tensors on the device until someone asks."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import torch
import torch.nn.functional as F

from .classify import Classification
from .encoders.base import ValueFeatures
from .encoders.text import LabelEmbeddings
from .masks.base import MaskSet
from .tokens import ViewPlan


@dataclass(frozen=True)
class Vocabulary:
    """Labels and their embeddings, swapped in as one object."""
    labels: Tuple[str, ...]  # vocabulary then background labels; label indices point here
    num_background: int
    label_emb: LabelEmbeddings
    background_emb: Optional[LabelEmbeddings]


@dataclass
class Grounding:
    query: str
    region: int  # index into the frame's regions; -1 when there are none
    prob: float  # softmax of the region's logits over {query, background}
    cosine: float
    margin: float  # prob minus the runner-up region's prob
    found: bool  # prob >= abstain threshold, or the query's locked target (tracks/locks.py)
    track_id: int = 0  # the region's track (tracks/tracker.py); 0 = untracked or not yet confirmed
    locked: bool = False  # the region is the query's locked target


FRAME_KINDS = ("full", "target", "propagated")


@dataclass
class FrameResult:
    frame_hw: Tuple[int, int]
    masks: MaskSet  # the regions that have tokens, in region order
    tokens: torch.Tensor  # (R, E)
    classes: Classification
    labels: Tuple[str, ...]  # vocabulary then background labels; label indices point here
    num_background: int
    queries: Tuple[str, ...]
    groundings: List[Grounding] = field(default_factory=list)  # one per query, in ``queries`` order
    region_logit_scale: float = 50.0
    timings: Dict[str, float] = field(default_factory=dict)
    vocab: Optional[Vocabulary] = None  # what ``labels`` come from (for grounding later queries)
    query_embeddings: Optional[LabelEmbeddings] = None  # of ``queries``
    views: Optional[Tuple[ValueFeatures, ViewPlan]] = None  # Pipeline.process(keep_views=True): the encoder's
    track_ids: Optional[np.ndarray] = None  # (R,) uint32 track per region (Pipeline.track); 0 = unconfirmed
    # What made the frame (FRAME_KINDS): "full", every region (everything-mode); "target", only each query's
    # best candidate (frames/target.py); "propagated", the locked target carried by SAM2's memory.
    kind: str = "full"

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def track_id_of(self, region: int) -> int:
        """The region's track id (0 when untracked, unconfirmed or no region)."""
        tids = self.track_ids
        return int(tids[region]) if tids is not None and 0 <= region < len(tids) else 0

    @cached_property
    def frame_masks(self) -> torch.Tensor:
        """(R, H, W) mask probabilities in [0, 1] at frame resolution."""
        return self.masks.at_frame(self.frame_hw)

    def label_map(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Dense (H, W) label index and confidence, per TextRegion's postprocess.

        Region logits are broadcast through the soft masks at mask resolution,
        summed, upsampled to the frame and softmaxed at the region logit scale.
        """
        h, w = self.frame_hw
        if len(self) == 0:
            z = torch.zeros((h, w), device=self.tokens.device)
            return z.long(), z
        masks = self.masks.pooling_source().clamp(0.0, 1.0)
        seg = torch.einsum("rl,rhw->lhw", self.classes.cosines.float(), masks.float())
        seg = F.interpolate(seg[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        conf, label = torch.softmax(seg * self.region_logit_scale, dim=0).max(dim=0)
        return label, conf


def groundings_from(queries: Sequence[str], tensors: Tuple[torch.Tensor, ...],
                    track_ids: Optional[np.ndarray] = None) -> List[Grounding]:
    """classify.ground's (region, prob, cosine, margin, found) tensors -> one Grounding per query (one
    host transfer)."""
    if not queries:
        return []
    region, prob, cos, margin, found = torch.stack([t.float() for t in tensors]).cpu()
    tid = lambda r: int(track_ids[r]) if track_ids is not None and 0 <= r < len(track_ids) else 0  # noqa: E731
    return [Grounding(q, int(region[i]), float(prob[i]), float(cos[i]), float(margin[i]), bool(found[i]),
                      tid(int(region[i]))) for i, q in enumerate(queries)]
