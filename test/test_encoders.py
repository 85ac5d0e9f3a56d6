"""Encoders: equivalence with open_clip's own forward pass, and the errors users see."""
import pytest
import torch

from textregion_ros.encoders import (ClipEncoder, PEEncoder, SigLIP2Encoder, WeightsUnavailableError,
                                     create_encoder, family_for)

FAMILIES = [("clip_encoder", ClipEncoder), ("siglip2_encoder", SigLIP2Encoder), ("pe_encoder", PEEncoder)]


@pytest.mark.parametrize("name,cls", FAMILIES)
def test_pool_with_models_own_attention_reproduces_encode_image(name, cls, request):
    """The production pooling head, fed the model's own CLS/probe attention (and residual + MLP
    where the model has them), reproduces model.encode_image before normalization."""
    torch.manual_seed(1)
    enc = request.getfixturevalue(name)
    assert isinstance(enc, cls)
    px = torch.randn(2, 3, enc.image_size, enc.image_size)
    with torch.no_grad():
        ref = enc.encode_image(px)
        feats = enc.encode_values(px)
        attn = enc.own_attention(feats)  # (B, H, N)
        residual = enc.own_residual(feats)
        out = torch.cat([enc.pool(feats.values[b], attn[b:b + 1],
                                  None if residual is None else residual[b:b + 1], use_mlp=True)
                         for b in range(2)])
    rel = ((out - ref).norm(dim=-1) / ref.norm(dim=-1)).max().item()
    assert rel < 1e-4, f"{name}: relative error {rel}"
    # And the check can fail: without the MLP the output differs.
    with torch.no_grad():
        off = enc.pool(feats.values[0], attn[:1], None if residual is None else residual[:1], use_mlp=False)
    assert ((off - ref[:1]).norm() / ref[:1].norm()).item() > 1e-3


def test_value_features_shape(clip_encoder):
    px = torch.zeros(1, 3, 224, 224)
    f = clip_encoder.encode_values(px)
    assert f.values.shape == (1, 1 + 14 * 14, 768)
    assert f.patch_values.shape == (1, 196, 768)


def test_family_by_name():
    assert family_for("ViT-L-14-336") is ClipEncoder
    assert family_for("ViT-SO400M-14-SigLIP2") is SigLIP2Encoder
    assert family_for("PE-Core-L-14-336") is PEEncoder
    with pytest.raises(ValueError, match="no encoder family"):
        family_for("RN50")


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-Q-99'"):
        create_encoder("ViT-Q-99", random_weights=True)


def test_missing_pretrained_weights_raise_and_never_fall_back_to_random(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as err:
        create_encoder("ViT-B-16", weights="openai")
    msg = str(err.value)
    assert "ViT-B-16" in msg and "openai" in msg and "local checkpoint path" in msg


def test_missing_checkpoint_file_and_unknown_tag(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="checkpoint file not found"):
        create_encoder("ViT-B-16", weights=str(tmp_path / "nope.pt"))
    with pytest.raises(WeightsUnavailableError, match="not a pretrained tag"):
        create_encoder("ViT-B-16", weights="no-such-tag")


def test_local_checkpoint_path_loads_those_weights(tmp_path, clip_encoder):
    path = tmp_path / "clip.pt"
    torch.save(clip_encoder.model.state_dict(), path)
    enc = create_encoder("ViT-B-16", weights=str(path))
    a = enc.model.visual.proj
    assert torch.equal(a, clip_encoder.model.visual.proj)


def test_wrong_pixels_raise(clip_encoder):
    with pytest.raises(ValueError, match="224x224"):
        clip_encoder.encode_values(torch.zeros(1, 3, 100, 100))
    with pytest.raises(ValueError, match="float"):
        clip_encoder.encode_values(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))
    with pytest.raises(ValueError):
        clip_encoder.encode_values(torch.zeros(3, 224, 224))


def test_siglip2_text_from_token_ids_without_hub_tokenizer(siglip2_encoder):
    enc = siglip2_encoder
    if enc._tokenizer is None:  # the tokenizer comes from the hub; offline there is none
        with pytest.raises(RuntimeError, match="tokenizer"):
            enc.encode_text(["a mug"])
    ids = torch.randint(1, 1000, (2, 64))
    emb = enc.encode_token_ids(ids)
    assert emb.shape == (2, 768)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
