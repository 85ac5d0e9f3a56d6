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
