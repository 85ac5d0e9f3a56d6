"""Text side: template ensembles, synonyms and the embedding cache, on real CLIP (random weights)."""
import pytest
import torch
import torch.nn.functional as F

from textregion_ros.encoders.text import TEMPLATE_SETS, TextEmbedder, split_synonyms


def test_template_ensemble_is_the_renormalized_mean_of_normalized_embeddings(clip_encoder):
    te = TextEmbedder(clip_encoder, "short")
    with torch.no_grad():
        per = F.normalize(clip_encoder.model.encode_text(
            clip_encoder.tokenize([t.format("mug") for t in TEMPLATE_SETS["short"]])).float(), dim=-1)
    expect = F.normalize(per.mean(0), dim=-1)
    assert torch.allclose(te.embed_name("mug"), expect, atol=1e-5)


def test_synonyms_and_cache(clip_encoder, monkeypatch):
    te = TextEmbedder(clip_encoder, "none")
    emb = te.embed_labels(["sofa; couch", "mug"])
    assert emb.group.tolist() == [0, 0, 1] and emb.embeddings.shape == (3, 512)
    calls = []
    orig = clip_encoder.encode_text
    monkeypatch.setattr(clip_encoder, "encode_text", lambda texts: calls.append(texts) or orig(texts))
    te.embed_labels(["couch", "mug", "sofa"])
    assert calls == []  # every name was cached
    te.embed_labels(["lamp"])
    assert len(calls) == 1


def test_bad_labels():
    with pytest.raises(ValueError):
        split_synonyms(" ; ")
    assert split_synonyms("sofa;couch ; ") == ["sofa", "couch"]
