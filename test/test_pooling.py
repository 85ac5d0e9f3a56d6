"""Hand-checked cases for mask pooling, global patch removal and multi-resolution fusion."""
import pytest
import torch
import torch.nn.functional as F

from textregion_ros.pooling import (fuse_multires_values, group_max, mask_pool_sum, masks_to_patch_weights,
                                    patch_belonging_score, remove_global_patches, resampled_patch_weights,
                                    resize_matrix, tile_boxes, uniform_in_mask)


def test_composed_resample_equals_upsampling_to_the_frame_then_downsampling():
    """The official path holds R frame-sized masks; the composed per-axis operator must not differ."""
    g = torch.Generator().manual_seed(0)
    low = torch.randn(5, 64, 64, generator=g) * 4
    frame, grid = (480, 640), (28, 28)  # 2x2 tiles of 14 patches: the frame is no multiple of the grid
    up = F.interpolate(low.clamp(0, 3)[:, None], frame, mode="bilinear", align_corners=False)
    expect = F.interpolate(up, grid, mode="bilinear", align_corners=False).flatten(1).clamp(0, 1)
    got = resampled_patch_weights(low.clamp(0, 3), frame, grid)
    assert torch.allclose(got, expect, atol=1e-5)
    # and it differs from downsampling the low-resolution masks directly (what we did before; the two
    # agree only when the frame is an integer multiple of the grid)
    assert not torch.allclose(masks_to_patch_weights(low.clamp(0, 3), grid), expect, atol=1e-3)
    assert resize_matrix(4, 2).shape == (2, 4)


def test_masks_downsample_bilinear_then_clamp():
    m = torch.zeros(1, 4, 4)
    m[0, :2, :2] = 3.0  # SAM2 clipped logits can exceed 1
    w = masks_to_patch_weights(m, (2, 2))
    assert torch.allclose(w, torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    half = torch.zeros(1, 4, 4)
    half[0, :2, :1] = 1.0  # covers half of the top-left patch
    assert torch.allclose(masks_to_patch_weights(half, (2, 2)), torch.tensor([[0.5, 0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError):
        masks_to_patch_weights(torch.zeros(4, 4), (2, 2))
    assert masks_to_patch_weights(torch.zeros(0, 4, 4), (2, 2)).shape == (0, 4)


def test_clip_pooling_is_a_weighted_sum_before_out_proj(clip_encoder):
    """CLIP region token = ln_post(out_proj(sum_i m_i v_i)) @ proj, by hand. The out_proj bias makes
    the sum differ from a mean, which this pins."""
    enc = clip_encoder
    attn = enc.last.attn
    saved = attn.out_proj.bias.detach().clone()
    torch.manual_seed(3)
    attn.out_proj.bias.data.normal_(0, 1.0)  # random init leaves it zero, which would hide the difference
    try:
        v = torch.randn(4, 768)
        w = torch.tensor([[0.5, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
        with torch.no_grad():
            got = enc.pool(v, enc.region_attention(w))
            expect = []
            for r in range(2):
                s = sum(w[r, i] * v[i] for i in range(4))
                y = s @ attn.out_proj.weight.T + attn.out_proj.bias
                expect.append(enc.visual.ln_post(y) @ enc.visual.proj)
            expect = torch.stack(expect)
            as_mean = enc.pool(v, w / w.sum(-1, keepdim=True))
        assert torch.allclose(got, expect, atol=1e-5)
        assert not torch.allclose(F.normalize(got, dim=-1), F.normalize(as_mean, dim=-1), atol=1e-3)
    finally:
        attn.out_proj.bias.data.copy_(saved)


@pytest.mark.parametrize("fixture", ["siglip2_encoder", "pe_encoder"])
def test_attention_pool_families_average_uniformly_inside_the_mask(fixture, request):
    enc = request.getfixturevalue(fixture)
    w = torch.tensor([[0.2, 0.0, 0.9, 0.0]])
    att = enc.region_attention(w)
    assert torch.allclose(att, torch.tensor([[0.5, 0.0, 0.5, 0.0]]))
    x_in = torch.randn(4, enc.head.proj.in_features)  # the pool's inputs (fused and filtered upstream)
    kv = enc.head.kv
    c = kv.out_features // 2
    saved = kv.bias.detach().clone()
    kv.bias.data.normal_(0, 1.0)  # a non-zero value bias must pass through exactly once
    try:
        with torch.no_grad():
            got = enc.pool(x_in, att)
            v = F.linear(x_in, kv.weight[c:], kv.bias[c:])  # value projection of every patch, then the mean
            mean_inside = (v[0] + v[2]) / 2
            x = enc.head.proj(mean_inside[None])  # MLP skipped; remaining projection and norms follow
            expect = enc.model.visual.head(enc.trunk.head(enc.trunk.fc_norm(x)))
    finally:
        kv.bias.data.copy_(saved)
    assert torch.allclose(got, expect, atol=1e-5)


def test_mask_pool_sum_per_head_weights():
    v = torch.arange(8.0).reshape(2, 4)  # N=2 patches, C=4, H=2 heads of dim 2
    w = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # head 0 takes patch 0, head 1 takes patch 1
    assert torch.equal(mask_pool_sum(v, w), torch.tensor([[0.0, 1.0, 6.0, 7.0]]))
    assert torch.equal(mask_pool_sum(v, torch.tensor([[1.0, 1.0]])), torch.tensor([[4.0, 6.0, 8.0, 10.0]]))


def test_uniform_in_mask_leaves_empty_rows_zero():
    assert torch.equal(uniform_in_mask(torch.zeros(1, 3)), torch.zeros(1, 3))


def global_case():
    values = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])  # patch 3 looks like region 0
    weights = torch.tensor([[1.0, 0.8, 0.0, 0.0], [0.0, 0.0, 1.0, 0.6]])
    return values, weights


def test_global_patch_score_by_hand():
    values, weights = global_case()
    # patch-to-region mean cosines: R0={0,1}: [1, 1, 0, 1]; R1={2,3}: [.5, .5, .5, .5]
    # belong (regions containing the patch) = [1, 1, .5, .5]; outside = [.5, .5, 0, 1]
    score = patch_belonging_score(values, weights)
    assert torch.allclose(score, torch.tensor([0.5, 0.5, 0.5, -0.5]))


def test_global_patch_removal_zeroes_patch_in_every_mask_and_keeps_indices():
    values, weights = global_case()
    out, kept = remove_global_patches(values, weights, threshold=0.07)
    assert kept.tolist() == [0, 1]
    assert torch.equal(out, torch.tensor([[1.0, 0.8, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))


def test_global_patch_removal_drops_empty_regions_and_survives_dropping_all():
    values, weights = global_case()
    weights = torch.cat([torch.zeros(1, 4), weights])  # an empty region first
    out, kept = remove_global_patches(values, weights, threshold=0.07)
    assert kept.tolist() == [1, 2]
    out, kept = remove_global_patches(values, weights, threshold=0.9)
    assert out.shape == (0, 4) and kept.numel() == 0
    out, kept = remove_global_patches(values, torch.zeros(0, 4), threshold=0.07)
    assert out.shape == (0, 4) and kept.numel() == 0


def test_tile_boxes_cover_the_image_with_equal_tiles():
    assert tile_boxes(480, 640, 2, 2) == [(0, 240, 0, 320), (0, 240, 320, 640), (240, 480, 0, 320),
                                          (240, 480, 320, 640)]
    boxes = tile_boxes(481, 641, 2, 2)
    assert {(y1 - y0, x1 - x0) for y0, y1, x0, x1 in boxes} == {(241, 321)}
    assert boxes[-1] == (240, 481, 320, 641)


def test_multires_fusion_by_hand():
    # grid 2, one row of two tiles: tiles are laid side by side, row-major inside each tile.
    a = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    b = torch.tensor([[5.0], [6.0], [7.0], [8.0]])
    fused = fuse_multires_values(torch.stack([a, b]), grid=2, rows=1, cols=2, has_global=False, global_weight=1.0)
    assert fused[:, 0].tolist() == [1.0, 2.0, 5.0, 6.0, 3.0, 4.0, 7.0, 8.0]
    # A constant global view upsamples to a constant and is added with its weight.
    g = torch.full((4, 1), 10.0)
    fused = fuse_multires_values(torch.stack([g, a, b]), 2, 1, 2, has_global=True, global_weight=0.5)
    assert fused[:, 0].tolist() == [6.0, 7.0, 10.0, 11.0, 8.0, 9.0, 12.0, 13.0]
    # Global only: values pass through.
    assert torch.equal(fuse_multires_values(a[None], 2, 0, 0, True, 1.0), a)
    with pytest.raises(ValueError):
        fuse_multires_values(torch.stack([a, b]), 2, 1, 2, has_global=True, global_weight=1.0)


def test_group_max():
    s = torch.tensor([[0.1, 0.9, 0.3], [0.5, 0.2, 0.4]])
    assert torch.equal(group_max(s, torch.tensor([0, 0, 1]), 2), torch.tensor([[0.9, 0.3], [0.5, 0.4]]))
