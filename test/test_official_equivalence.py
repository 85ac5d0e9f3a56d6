"""Our region tokens against an independent implementation of the official formulas.

Models are built by open_clip with each family's pretrained-tag metadata (QuickGELU for OpenAI
CLIP), random weights, and randomly redrawn biases where TextRegion's formulas see them. The
oracle (official_textregion.py) is written from the official code and shares no code with ours.
"""
import numpy as np
import pytest
import torch

from official_textregion import (clip_region_features, cosine_rows, official_feature_masks, official_inputs,
                                 pe_region_features, redraw_biases, siglip_region_features)
from textregion_ros.encoders import create_encoder
from textregion_ros.masks.base import MaskSet
from textregion_ros.tokens import encode_value_map, region_tokens

FAMILIES = {
    "clip-segmentation": ("ViT-B-16", "openai", "segmentation", clip_region_features),
    "clip-referring": ("ViT-B-16", "openai", "referring", clip_region_features),
    "siglip2": ("ViT-B-16-SigLIP2", "webli", "segmentation", siglip_region_features),
    "pe": ("PE-Core-B-16", "meta", "segmentation", pe_region_features),
}


@pytest.fixture(scope="module")
def encoders():
    cache = {}

    def get(model, tag):
        if (model, tag) not in cache:
            torch.manual_seed(0)
            enc = create_encoder(model, weights=tag, random_weights=True)
            assert redraw_biases(enc.model, std=0.5, seed=1) > 5
            cache[(model, tag)] = enc
        return cache[(model, tag)]
    return get


@pytest.fixture(scope="module")
def official_of(encoders, scene):
    """The official code's region features per (family, multi) on the scene's blobs, computed once: the
    deviation test compares against the same reference as the equivalence test (read, never changed)."""
    cache = {}

    def get(family, multi):
        if (family, multi) not in cache:
            model, tag, head, fn = FAMILIES[family]
            cache[(family, multi)] = official(encoders(model, tag), scene.rgb, blob_logits(scene.rgb.shape[:2]),
                                              multi, head, fn)
        return cache[(family, multi)]
    return get


def blob_logits(frame_hw, low=128, seed=0):
    """SAM2-like low-resolution logits: soft ellipses and boxes of several sizes, some overlapping."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:low, 0:low].astype(np.float32)
    out = []
    for i in range(14):
        cy, cx = rng.uniform(10, low - 10, 2)
        ry, rx = rng.uniform(4, 40, 2)
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        out.append(8.0 * (1.0 - d) + rng.normal(0, 0.5, d.shape))
    return torch.from_numpy(np.clip(np.stack(out), -32, 32)).float()


def ours(enc, rgb, logits, tiles, head):
    img = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    ms = MaskSet(masks=logits, scores=torch.ones(len(logits)), frame_hw=rgb.shape[:2], is_logits=True)
    with torch.no_grad():
        fmap = encode_value_map(enc, img, tiles, True, enc.default_global_weight)
        rt = region_tokens(enc, fmap, ms.patch_weights(fmap.grid_hw), True, 0.07, head)
    return rt.tokens, rt.kept


def official(enc, rgb, logits, multi, head, fn):
    image01 = rgb.astype(np.float32) / 255.0
    clip_inputs, geo = official_inputs(image01, enc.image_size, enc.patch_size, enc.interpolation,
                                       enc.mean.flatten().tolist(), enc.std.flatten().tolist(), multi)
    fm, kept0 = official_feature_masks(logits, rgb.shape[:2], geo)
    kw = {"referring": head == "referring"} if fn is clip_region_features else {}
    with torch.no_grad():
        feats, kept = fn(enc.model, clip_inputs, geo, fm.clone(), multi_resolution=multi, **kw)
    return feats, kept0[kept], fm


@pytest.mark.parametrize("multi", [True, False], ids=["multires", "single"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_region_tokens_match_the_official_formulas(family, multi, encoders, scene, official_of):
    model, tag, head, fn = FAMILIES[family]
    enc = encoders(model, tag)
    rgb = scene.rgb
    logits = blob_logits(rgb.shape[:2])
    ref, ref_kept, fm = official_of(family, multi)
    got, kept = ours(enc, rgb, logits, "auto" if multi else "none", head)
    assert len(ref_kept) >= 1
    assert kept.tolist() == ref_kept.tolist(), "the same regions are kept, in the same order"
    cos = cosine_rows(got, ref)
    print(f"{family} {'multi' if multi else 'single'}: min cosine {cos.min():.6f} over {len(cos)} regions")
    assert cos.min().item() >= 0.999


def test_the_comparison_sees_a_deviation(encoders, scene, official_of):
    """Fusing SigLIP2's value projections (our old path) instead of the pool inputs moves tokens
    below the bar once biases are non-zero: the test above can fail."""
    enc = encoders("ViT-B-16-SigLIP2", "webli")
    rgb = scene.rgb
    logits = blob_logits(rgb.shape[:2])
    ref, ref_kept, _ = official_of("siglip2", True)
    kv = enc.head.kv
    c = kv.out_features // 2
    img = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    ms = MaskSet(masks=logits, scores=torch.ones(len(logits)), frame_hw=rgb.shape[:2], is_logits=True)
    with torch.no_grad():
        fmap = encode_value_map(enc, img, "auto", True, 0.5)
        # The old path fused value projections: global 0.5 * (W g + b) + tile (W t + b), one 0.5 * b_v too many.
        old = torch.nn.functional.linear(fmap.values, kv.weight[c:], kv.bias[c:]) + 0.5 * kv.bias[c:]
        w = ms.patch_weights(fmap.grid_hw)
        rt = region_tokens(enc, fmap, w, True, 0.07)
        inside = (w[rt.kept] > 0).float()
        inside = inside / inside.sum(-1, keepdim=True)
        x = enc.head.proj(inside @ old)
        tok = torch.nn.functional.normalize(enc.model.visual.head(enc.trunk.head(enc.trunk.fc_norm(x))), dim=-1)
    assert rt.kept.tolist() == ref_kept.tolist()
    assert cosine_rows(tok, ref).min().item() < 0.999


@pytest.mark.parametrize("multi", [True, False], ids=["multires", "single"])
def test_dense_csa_logits_match_the_official_fill(multi, encoders, scene):
    """The evaluation's fill for pixels no region covers (model_semantic.get_CLIP_logits)."""
    from official_textregion import get_clip_logits
    from textregion_ros.tokens import dense_embedding_map

    enc = encoders("ViT-B-16", "openai")
    rgb = scene.rgb
    queries = torch.nn.functional.normalize(torch.randn(5, enc.model.visual.proj.shape[1],
                                                        generator=torch.Generator().manual_seed(3)), dim=-1)
    clip_inputs, geo = official_inputs(rgb.astype(np.float32) / 255.0, enc.image_size, enc.patch_size,
                                       enc.interpolation, enc.mean.flatten().tolist(), enc.std.flatten().tolist(),
                                       multi)
    with torch.no_grad():
        want = get_clip_logits(enc.model, clip_inputs, geo, queries, multi)[0]  # (Q, h, w)
        fmap = dense_embedding_map(enc, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0,
                                   "auto" if multi else "none", True)
    got = (fmap.values @ queries.T).T.reshape(-1, *fmap.grid_hw)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    assert (want.std() > 1e-3)  # logits that vary: the comparison can fail


def test_the_dense_fill_reuses_the_region_pass_and_equals_a_fresh_one(encoders, scene, monkeypatch):
    """The evaluation keeps the region pass's per-view features (Pipeline.process(keep_views=True)) and
    runs only the CSA block on them: the encoder runs once per image, with the same fill as a second pass."""
    from textregion_ros.tokens import dense_embedding_map, encode_value_map

    enc = encoders("ViT-B-16", "openai")
    img = torch.from_numpy(scene.rgb).permute(2, 0, 1).float() / 255.0
    calls = []
    real = enc.encode_values
    monkeypatch.setattr(enc, "encode_values", lambda x: calls.append(len(x)) or real(x))
    with torch.no_grad():
        fmap = encode_value_map(enc, img, "auto", True, enc.default_global_weight, keep_views=True)
        reused = dense_embedding_map(enc, img, "auto", True, fmap.views)
        assert len(calls) == 1
        fresh = dense_embedding_map(enc, img, "auto", True)
    assert len(calls) == 2 and reused.grid_hw == fresh.grid_hw
    torch.testing.assert_close(reused.values, fresh.values, atol=1e-6, rtol=0)
    assert encode_value_map(enc, img, "auto", True, enc.default_global_weight).views is None  # the node's case
