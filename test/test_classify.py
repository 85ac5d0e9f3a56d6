"""Classification and grounding on constructed tokens where the answer is known."""
import pytest
import torch
import torch.nn.functional as F

from textregion_ros.classify import classify, ground
from textregion_ros.encoders.text import LabelEmbeddings

E = torch.eye(8)


def labels(names, rows, group=None):
    group = torch.arange(len(rows)) if group is None else torch.tensor(group)
    return LabelEmbeddings(tuple(names), torch.stack(rows), group)


def test_classification_picks_the_right_label_and_reports_prob_and_cosine():
    vocab = labels(["mug", "ball", "book"], [E[0], E[1], E[2]])
    tokens = torch.stack([E[0], F.normalize(E[1] + 0.1 * E[2], dim=0)])
    c = classify(tokens, vocab, scale=50.0)
    assert c.label.tolist() == [0, 1]
    assert torch.allclose(c.cosine, torch.tensor([1.0, 1 / (1.01 ** 0.5)]), atol=1e-5)
    expected = torch.softmax(50 * torch.tensor([1.0, 0.0, 0.0]), 0)[0]
    assert torch.isclose(c.prob[0], expected)
    assert c.cosines.shape == (2, 3)


def test_synonyms_score_the_max_over_their_embeddings():
    vocab = labels(["sofa; couch", "table"], [E[0], E[1], E[2]], group=[0, 0, 1])
    c = classify(E[1][None], vocab)
    assert c.label.tolist() == [0] and torch.isclose(c.cosine[0], torch.tensor(1.0))


def test_grounding_finds_the_best_region_with_probability_and_margin():
    queries = labels(["red mug"], [E[0]])
    background = labels(["wall"], [E[3]])
    tokens = torch.stack([F.normalize(E[3] + 0.2 * E[0], dim=0), E[0], F.normalize(E[0] + E[3], dim=0)])
    region, prob, cos, margin, found = ground(tokens, queries, background, scale=50.0, abstain=0.5)
    assert region.tolist() == [1]
    assert torch.isclose(cos[0], torch.tensor(1.0))
    assert prob[0] > 0.99 and bool(found[0])
    # runner-up is region 2 (query and wall tie: prob 0.5)
    assert torch.isclose(margin[0], prob[0] - 0.5, atol=1e-4)


def test_abstains_when_the_query_loses_to_background():
    queries = labels(["red mug"], [E[0]])
    background = labels(["wall", "floor"], [E[3], E[4]])
    tokens = torch.stack([F.normalize(0.3 * E[0] + E[3], dim=0), F.normalize(0.2 * E[0] + E[4], dim=0)])
    region, prob, cos, margin, found = ground(tokens, queries, background, 50.0, 0.5)
    assert region.tolist() == [0]
    assert prob[0] < 0.5 and not bool(found[0])


def test_several_queries_at_once_and_empty_inputs():
    queries = labels(["a", "b"], [E[0], E[1]])
    background = labels(["wall"], [E[3]])
    tokens = torch.stack([E[1], E[0]])
    region, *_ = ground(tokens, queries, background)
    assert region.tolist() == [1, 0]
    region, prob, cos, margin, found = ground(torch.zeros(0, 8), queries, background)
    assert region.tolist() == [-1, -1] and not found.any()
    with pytest.raises(ValueError, match="background"):
        ground(tokens, queries, None)  # a softmax model always needs something to lose to


def test_sigmoid_models_use_their_own_scale_and_bias():
    """SigLIP2: P = sigmoid(exp(t) * cos + b), no background needed; it abstains on weak matches."""
    queries = labels(["a"], [E[0]])
    tokens = torch.stack([F.normalize(E[0] + 2 * E[1], dim=0), F.normalize(E[0] + 0.1 * E[1], dim=0)])
    scale, bias = 10.0, -5.0
    region, prob, cos, margin, found = ground(tokens, queries, None, 50.0, 0.5, sigmoid=(scale, bias))
    c = float(F.normalize(E[0] + 0.1 * E[1], dim=0) @ E[0])
    assert region.tolist() == [1] and torch.isclose(prob[0], torch.sigmoid(torch.tensor(scale * c + bias)))
    _, prob, _, _, found = ground(tokens, queries, None, 50.0, 0.5, sigmoid=(scale, -20.0))
    assert prob[0] < 0.01 and not found[0]
    # classification: softmax of region_logit_scale * (exp(t) * cos + b), as the official code
    c2 = classify(tokens, labels(["a", "b"], [E[0], E[1]]), 2.0, sigmoid=(scale, bias))
    logits = (tokens @ torch.stack([E[0], E[1]]).T) * scale + bias
    assert torch.allclose(c2.prob, torch.softmax(logits * 2.0, -1).max(-1).values)
