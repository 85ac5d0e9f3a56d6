"""Region classification and query grounding: similarities to text embeddings.

Scores follow the official code. A region's logit for a label is its cosine, or for a
sigmoid-trained model (SigLIP2) ``exp(t) * cosine + b`` with the model's own scale and bias.
Label probabilities are the softmax of ``region_logit_scale`` times those logits.

Grounding a query answers "is this region the thing named", so it needs something to lose to:
* softmax models (CLIP, PE): P = softmax over {query} + background labels at the region logit
  scale; with no background labels the query competes with the word "background";
* sigmoid models (SigLIP2): P = sigmoid(exp(t) * cosine + b), the model's own pairwise match
  probability, which needs no alternatives.
The query's best region is the one with the highest cosine; it is "found" when P >= abstain.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

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


def classify(tokens: torch.Tensor, labels: LabelEmbeddings, scale: float = 50.0,
             sigmoid: Optional[Tuple[float, float]] = None) -> Classification:
    cos = label_cosines(tokens, labels)
    logits = cos if sigmoid is None else cos * sigmoid[0] + sigmoid[1]
    probs = torch.softmax(logits * scale, dim=-1)
    prob, label = probs.max(dim=-1)
    return Classification(label, prob, cos.gather(-1, label[:, None])[:, 0], cos)


def query_scores(tokens: torch.Tensor, queries: LabelEmbeddings, background: LabelEmbeddings | None,
                 scale: float = 50.0, sigmoid: Optional[Tuple[float, float]] = None
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(R, Q) probability that each region is each query (module docstring), and the (R, Q) cosines."""
    if sigmoid is not None:
        cos_q = label_cosines(tokens, queries)  # (R, Q)
        return torch.sigmoid(cos_q * sigmoid[0] + sigmoid[1]), cos_q
    if background is None or not len(background):
        raise ValueError("grounding with a softmax model needs at least one background label")
    # One matmul for the queries' and the background's embeddings: the tokens are read once (at thousands of
    # remembered objects, reading them is the cost).
    both = tokens @ torch.cat([queries.embeddings, background.embeddings]).to(tokens.dtype).T
    n = queries.embeddings.shape[0]
    cos_q = group_max(both[:, :n], queries.group.to(tokens.device), len(queries))  # (R, Q)
    cos_b = group_max(both[:, n:], background.group.to(tokens.device), len(background))
    bg = torch.logsumexp(cos_b * scale, dim=-1, keepdim=True)  # (R, 1)
    return torch.sigmoid(cos_q * scale - bg), cos_q


def ground(tokens: torch.Tensor, queries: LabelEmbeddings, background: LabelEmbeddings | None,
           scale: float = 50.0, abstain: float = 0.5, sigmoid: Optional[Tuple[float, float]] = None):
    """Best region per query, batched over queries. Returns tensors (region, prob, cosine, margin, found).

    The probability rule is in the module docstring; the margin is the best region's
    probability minus the runner-up region's.
    """
    r, q = tokens.shape[0], len(queries)
    if r == 0 or q == 0:
        z = torch.zeros(q, device=tokens.device)
        return (torch.full((q,), -1, dtype=torch.long, device=tokens.device), z, z, z, z.bool())
    return ground_from_scores(*query_scores(tokens, queries, background, scale, sigmoid), abstain)


def ground_from_scores(probs: torch.Tensor, cos_q: torch.Tensor, abstain: float = 0.5):
    """ground() from query_scores()' (R, Q) probabilities and cosines (R >= 1), for a caller that keeps them."""
    r = probs.shape[0]
    best_cos, best = cos_q.max(dim=0)  # (Q,)
    prob = probs.gather(0, best[None])[0]
    others = probs.scatter(0, best[None], float("-inf"))
    runner_up = others.max(dim=0).values if r > 1 else torch.zeros_like(prob)
    margin = prob - runner_up.clamp_min(0.0)
    return best, prob, best_cos, margin, prob >= abstain
