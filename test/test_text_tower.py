"""The text tower cut at end-of-text gives open_clip's own full-context embedding, on random weights."""
import pytest
import torch
import torch.nn.functional as F

from textregion_ros.encoders.text_tower import causal_eot_tower

TEXTS = ["a photo of a mug.", "a photo of a red ceramic coffee mug on the left of the wooden desk.", "keys"]


@pytest.mark.parametrize("fixture", ["clip_encoder", "pe_encoder"])
def test_cut_tower_equals_the_models_encode_text_and_runs_a_short_context(fixture, request):
    enc = request.getfixturevalue(fixture)
    tower = causal_eot_tower(enc.model)
    assert tower is not None, f"{fixture}: a causal argmax tower should be cut"
    ids = enc.tokenize(TEXTS)
    seen = []
    hook = tower.transformer.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    try:
        ours = enc.encode_token_ids(ids)
    finally:
        hook.remove()
    with torch.no_grad():
        theirs = F.normalize(enc.model.encode_text(ids).float(), dim=-1)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
    longest = int(ids.argmax(-1).max()) + 1
    assert longest < ids.shape[1] and any(longest in s for s in seen), (longest, seen)  # the cut really ran


def test_siglip2_tower_is_not_cut(siglip2_encoder):
    # No causal mask and a last-token pool: every position reaches the output, so cutting would change it.
    assert causal_eot_tower(siglip2_encoder.model) is None


@pytest.mark.parametrize("fixture", ["clip_encoder", "pe_encoder"])
def test_the_cut_holds_with_every_weight_and_bias_non_zero(fixture, request):
    # Random init leaves the attention and LayerNorm biases at zero; pretrained towers do not. A copy with
    # every parameter drawn at random (the shared fixture stays as it is).
    import copy

    from textregion_ros.encoders.text_tower import encode_to_eot
    enc = request.getfixturevalue(fixture)
    model = copy.deepcopy(enc.model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=gen) + 0.02)
        ids = enc.tokenize(TEXTS)
        ours = F.normalize(encode_to_eot(causal_eot_tower(model), ids).float(), dim=-1)
        theirs = F.normalize(model.encode_text(ids).float(), dim=-1)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
