"""Text side: template ensembles, synonyms and the embedding cache, on real CLIP (random weights)."""
import os

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


def test_embeddings_persist_on_disk_keyed_by_model_weights_and_templates(tmp_path, clip_encoder):
    from textregion_ros.encoders.text import TextEmbedder, disk_cache_dir

    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"weights v1")
    d1 = disk_cache_dir("ViT-B-16", str(ckpt), "short", root=str(tmp_path / "cache"))
    calls = []
    real = clip_encoder.encode_text

    def counting(texts):
        calls.append(len(texts))
        return real(texts)
    clip_encoder.encode_text = counting
    try:
        cold = TextEmbedder(clip_encoder, "short", disk_dir=d1).embed_labels(["red mug", "sofa; couch"])
        assert calls == [3 * len(TEMPLATE_SETS["short"])], "the three new names' templates in one call"
        warm = TextEmbedder(clip_encoder, "short", disk_dir=d1).embed_labels(["red mug", "sofa; couch"])
        assert len(calls) == 1, "a fresh embedder (a restart) reads the disk cache"
        assert torch.equal(cold.embeddings, warm.embeddings)
    finally:
        clip_encoder.encode_text = real
    assert disk_cache_dir("ViT-B-16", str(ckpt), "imagenet", root=str(tmp_path / "cache")) != d1
    assert disk_cache_dir("ViT-L-14", str(ckpt), "short", root=str(tmp_path / "cache")) != d1
    assert disk_cache_dir("ViT-B-16", "openai", "short", root=str(tmp_path / "cache")) != d1
    ckpt.write_bytes(b"weights v2, other size")
    assert disk_cache_dir("ViT-B-16", str(ckpt), "short", root=str(tmp_path / "cache")) != d1


def test_a_batched_vocabulary_equals_each_name_embedded_alone(clip_encoder, monkeypatch):
    import textregion_ros.encoders.text as text
    monkeypatch.setattr(text, "TEXT_BATCH", 7)  # chunks that split a name's templates across calls
    labels = ["sofa; couch", "mug", "red mug", "mug"]
    together = TextEmbedder(clip_encoder, "short").embed_labels(labels)
    alone = TextEmbedder(clip_encoder, "short")
    expect = torch.stack([alone.embed_name(n) for n in ["sofa", "couch", "mug", "red mug", "mug"]])
    assert together.group.tolist() == [0, 0, 1, 2, 3]
    assert torch.allclose(together.embeddings, expect, atol=1e-5)


def test_random_weights_are_cached_by_their_own_values(tmp_path, monkeypatch, clip_encoder):
    """Random weights have no tag or file to name them: the cache key is a hash of the text side's values.
    The same values share a cache, another draw or one changed text weight does not, the image side does not
    count, and a hit gives what a fresh embedder computes. (The same seed giving the same values: below.)"""
    import copy

    from textregion_ros.encoders import create_encoder
    from textregion_ros.encoders.text import text_cache_dir

    monkeypatch.setenv("TEXTREGION_CACHE", str(tmp_path))
    torch.manual_seed(6)
    a, same, other = clip_encoder, copy.deepcopy(clip_encoder), create_encoder("ViT-B-16", random_weights=True)
    key = lambda enc: text_cache_dir(enc, "ViT-B-16", "openai", "short", True)  # noqa: E731
    assert key(a) == key(same) and key(a) != key(other)
    assert key(a) != text_cache_dir(a, "ViT-B-16", "openai", "short", False), "a tag's cache is not random weights'"
    assert key(a) != text_cache_dir(a, "ViT-B-16", "laion2b_s34b_b88k", "short", True), \
        "the same values under another tag are another tower (GELU, where openai's metadata gives QuickGELU)"
    with torch.no_grad():
        same.model.visual.conv1.weight.add_(1.0)
    assert key(same) == key(a), "the image tower's weights do not change text embeddings"
    with torch.no_grad():
        same.model.ln_final.bias.add_(1e-3)
    assert key(same) != key(a), "one changed text weight is another cache"
    fresh = TextEmbedder(a, "short").embed_labels(["red mug"]).embeddings
    TextEmbedder(a, "short", disk_dir=key(a)).embed_labels(["red mug"])  # fills the cache
    hit = TextEmbedder(other, "short", disk_dir=key(a)).embed_labels(["red mug"]).embeddings  # other weights, a's key
    assert torch.equal(hit, fresh), "a hit is read from the cache, not embedded again"
    assert not torch.allclose(TextEmbedder(other, "short").embed_labels(["red mug"]).embeddings, fresh)


def test_the_nodes_draw_random_weights_from_one_seed_and_share_the_embeddings(tmp_path, monkeypatch):
    """Two loads (two starts, or the perception and the memory node) get the same random text tower, whatever
    drew from the generator before, so the second reads the vocabulary's embeddings from the disk cache."""
    import logging

    from textregion_ros.config import preset
    from textregion_ros.encoders.text import weights_fingerprint
    from textregion_ros.ros.loading import load_find_scores

    monkeypatch.setenv("TEXTREGION_CACHE", str(tmp_path))
    config = preset("cpu-lite", random_weights=True, background=("wall", "floor"))
    first = load_find_scores(config, logging.getLogger("test"))
    torch.rand(1000)  # another draw between the two starts
    second = load_find_scores(config, logging.getLogger("test"))
    assert weights_fingerprint(first.encoder.model) == weights_fingerprint(second.encoder.model)
    assert second.text.disk_dir == first.text.disk_dir and os.listdir(first.text.disk_dir)
    assert torch.equal(first.background.embeddings, second.background.embeddings)
