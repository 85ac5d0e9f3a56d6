"""Region classification and query grounding: cosine similarities to text embeddings."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .encoders.text import LabelEmbeddings
from .pooling import group_max


@dataclass
class Classification:
    label: torch.Tensor  # (R,) label index
    prob: torch.Tensor  # (R,) softmax probability of that label
    cosine: torch.Tensor  # (R,) cosine to that label
    cosines: torch.Tensor  # (R, L) cosine to every label (max over synonyms)


def label_cosines(tokens: torch.Tensor, labels: LabelEmbeddings) -> torch.Tensor:
    """(R, E) tokens -> (R, L) cosine per label, the max over its synonyms."""
    cos = tokens @ labels.embeddings.to(tokens.dtype).T
    return group_max(cos, labels.group.to(tokens.device), len(labels))


def classify(tokens: torch.Tensor, labels: LabelEmbeddings, scale: float = 50.0) -> Classification:
    cos = label_cosines(tokens, labels)
    probs = torch.softmax(cos * scale, dim=-1)
    prob, label = probs.max(dim=-1)
    return Classification(label, prob, cos.gather(-1, label[:, None])[:, 0], cos)


def ground(tokens: torch.Tensor, queries: LabelEmbeddings, background: LabelEmbeddings | None,
           scale: float = 50.0, abstain: float = 0.5):
    """Best region per query, batched over queries. Returns tensors (region, prob, cosine, margin, found).

    A region's query probability is the softmax of its logits over
    {query, background labels}; the margin is the best region's probability
    minus the runner-up region's.
    """
    r = tokens.shape[0]
    q = len(queries)
    if r == 0 or q == 0:
        z = torch.zeros(q, device=tokens.device)
        return (torch.full((q,), -1, dtype=torch.long, device=tokens.device), z, z, z, z.bool())
    cos_q = label_cosines(tokens, queries)  # (R, Q)
    if background is not None and len(background):
        bg = torch.logsumexp(label_cosines(tokens, background) * scale, dim=-1, keepdim=True)  # (R, 1)
        probs = torch.sigmoid(cos_q * scale - bg)
    else:
        probs = torch.ones_like(cos_q)
    best_cos, best = cos_q.max(dim=0)  # (Q,)
    prob = probs.gather(0, best[None])[0]
    others = probs.scatter(0, best[None], float("-inf"))
    runner_up = others.max(dim=0).values if r > 1 else torch.zeros_like(prob)
    margin = prob - runner_up.clamp_min(0.0)
    return best, prob, best_cos, margin, prob >= abstain
