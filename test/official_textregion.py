"""TextRegion's region tokens as the official code computes them, for equivalence tests.

Written from avaxiao/TextRegion (TextRegionSegmenter.py, model_semantic.py,
sam2/custom_automatic_mask_generator.py), step by step and with the official variable names,
over open_clip models, and deliberately without importing anything from textregion_ros: this is
the oracle our pipeline is compared with, so it must not share code paths with it.

Mapping from the official models to open_clip's:
* CLIP (custom_clip, LND layout): the last ``resblock``'s ``attn.in_proj_*``, ``out_proj``,
  ``ln_1``/``ln_2``/``mlp``; ``visual.ln_post`` and ``visual.proj``. open_clip is batch-first.
* SigLIP2: the official code already uses open_clip (``visual.trunk.forward_intermediates`` and
  ``visual.trunk.attn_pool``).
* PE (the official ``core.vision_encoder.pe``): its ``AttentionPooling`` (``probe``, an
  ``nn.MultiheadAttention``) is timm's ``AttentionPoolLatent`` (``latent``, ``q``, ``kv``,
  ``proj``) in open_clip, and ``x @ visual.proj`` is ``trunk.head``.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode, v2


# --- preprocessing: imrescale, crops and clip_preprocess --------------------------------------
def imrescale_bilinear(image_hwc: np.ndarray, scale=(2016, 672)) -> np.ndarray:
    """mmcv.imrescale(img, (2016, 672), interpolation='bilinear') on a float image."""
    h, w = image_hwc.shape[:2]
    max_long, max_short = max(scale), min(scale)
    factor = min(max_long / max(h, w), max_short / min(h, w))
    new_w, new_h = int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)
    return cv2.resize(image_hwc, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def clip_preprocess(crop_size, interpolation, mean, std):
    return v2.Compose([
        v2.Resize((crop_size, crop_size), interpolation=interpolation),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ])


def official_inputs(image01_hwc: np.ndarray, crop_size: int, patch_size: int, interpolation: str, mean, std,
                    multi_resolution: bool = True):
    """-> (clip_inputs (V, 3, S, S), geometry dict) as predict() builds them."""
    mode = InterpolationMode.BICUBIC if interpolation == "bicubic" else InterpolationMode.BILINEAR
    preprocess = clip_preprocess(crop_size, mode, mean, std)
    if multi_resolution:
        img_arr = imrescale_bilinear(image01_hwc)
    else:
        img_arr = image01_hwc
    image_channel_first_float = torch.from_numpy(np.ascontiguousarray(img_arr)).permute(2, 0, 1).float()
    h, w = img_arr.shape[:2]
    geo = {"h": h, "w": w}
    if multi_resolution:
        clip_inputs = [preprocess(image_channel_first_float)]
        crop_num_h, crop_num_w = max(h // crop_size, 1), max(w // crop_size, 1)
        points_per_w = (crop_size // patch_size) * crop_num_w
        points_per_h = (crop_size // patch_size) * crop_num_h
        crop_size_h, crop_size_w = int(np.ceil(h / crop_num_h)), int(np.ceil(w / crop_num_w))
        for h_idx in range(crop_num_h):
            for w_idx in range(crop_num_w):
                y1 = h_idx * crop_size_h
                x1 = w_idx * crop_size_w
                y2 = min(y1 + crop_size_h, h)
                x2 = min(x1 + crop_size_w, w)
                y1 = max(y2 - crop_size_h, 0)
                x1 = max(x2 - crop_size_w, 0)
                clip_inputs.append(preprocess(image_channel_first_float[:, y1:y2, x1:x2]))
        clip_inputs = torch.stack(clip_inputs)
        geo.update(crop_num_h=crop_num_h, crop_num_w=crop_num_w, points_per_h=points_per_h,
                   points_per_w=points_per_w)
    else:
        clip_inputs = preprocess(image_channel_first_float).unsqueeze(0)
        geo.update(points_per_h=crop_size // patch_size, points_per_w=crop_size // patch_size)
    return clip_inputs, geo


def official_feature_masks(low_res_logits: torch.Tensor, frame_hw, geo) -> torch.Tensor:
    """SAM2 'segmentations' (clamped [0, 3] logits upsampled to the frame) -> feature_masks (R, N), kept."""
    segmentations = F.interpolate(low_res_logits.clamp(0, 3)[:, None], frame_hw, mode="bilinear",
                                  align_corners=False)[:, 0]
    feature_masks = F.interpolate(segmentations.unsqueeze(0), [geo["points_per_h"], geo["points_per_w"]],
                                  mode="bilinear")
    feature_masks = feature_masks.reshape(-1, geo["points_per_h"] * geo["points_per_w"])
    feature_masks = torch.clamp(feature_masks, min=0, max=1)
    keep_masks = torch.sum(feature_masks, dim=1) > 0
    return feature_masks[keep_masks], torch.nonzero(keep_masks).squeeze(-1)


# --- shared steps, as each *_value_with_sam2_attn writes them ------------------------------------
def multi_reso(x_ori: torch.Tensor, geo, patch_num: int, global_weight: float) -> torch.Tensor:
    """x_ori (V, C, g, g) -> (1, C, points_per_h, points_per_w)."""
    x_multi_reso = F.interpolate(x_ori[:1], [geo["points_per_h"], geo["points_per_w"]], mode="bilinear")
    crop_id = 1
    for h_idx in range(geo["crop_num_h"]):
        for w_idx in range(geo["crop_num_w"]):
            y1, x1 = h_idx * patch_num, w_idx * patch_num
            y2, x2 = y1 + patch_num, x1 + patch_num
            x_multi_reso[:, :, y1:y2, x1:x2] = global_weight * x_multi_reso[:, :, y1:y2, x1:x2] + x_ori[crop_id]
            crop_id += 1
    return x_multi_reso


def remove_global_patch(x_input_2d: torch.Tensor, feature_masks: torch.Tensor, threshold: float,
                        normalize_in_place: bool = False) -> torch.Tensor:
    """x_input_2d (N, C); zeroes global patches in feature_masks (in place, as the official code)."""
    if normalize_in_place:  # TextRegionSegmenter's CLIP path: patch_features /= norm on a view
        x_input_2d /= x_input_2d.norm(dim=-1, keepdim=True)
        patch_features = x_input_2d
    else:
        patch_features = x_input_2d / x_input_2d.norm(dim=-1, keepdim=True)
    patch_similarity = (patch_features @ patch_features.T).float()
    patch_2_region = patch_similarity @ (feature_masks > 0).float().T
    patch_2_region_avg = patch_2_region / (feature_masks > 0).sum(dim=-1)
    belong_score = patch_2_region_avg * (feature_masks > 0).float().T
    belong_score_avg = belong_score.sum(dim=-1) / ((feature_masks > 0).sum(dim=0) + 1e-9)
    outside_score = patch_2_region_avg * (feature_masks == 0).float().T
    outside_score_avg = outside_score.sum(dim=-1) / ((feature_masks == 0).sum(dim=0) + 1e-9)
    difference_score = (belong_score_avg - outside_score_avg).cpu().float().numpy()
    feature_masks[:, difference_score < threshold] = 0
    return feature_masks


def last_block_input(model, clip_inputs: torch.Tensor) -> torch.Tensor:
    """The input of CLIP's last residual block (what custom_clip's encode_image(return_value=True) returns)."""
    seen = {}
    last = model.visual.transformer.resblocks[-1]
    handle = last.register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0]))
    try:
        model.visual(clip_inputs)
    finally:
        handle.remove()
    return seen["x"]


# --- the three families ---------------------------------------------------------------------------
def clip_region_features(model, clip_inputs, geo, feature_masks, *, referring: bool, threshold=0.07,
                         multi_resolution=True, remove_global=True):
    """clip_value_with_sam2_attn: referring=True is TextRegionSegmenter's (MLP on, values normalised in
    place by the removal step); referring=False is model_semantic's (raw values, no MLP)."""
    blk = model.visual.transformer.resblocks[-1]
    attn_layer = blk.attn
    num_heads = attn_layer.num_heads
    input_feature = last_block_input(model, clip_inputs)  # (B, L, C) batch-first
    bsz, _, embed_dim = input_feature.shape
    head_dim = embed_dim // num_heads
    x = blk.ln_1(input_feature)
    q, k, v_ori = F.linear(x, attn_layer.in_proj_weight, attn_layer.in_proj_bias).chunk(3, dim=-1)
    patch_num = model.visual.image_size[0] // model.visual.patch_size[0]
    if multi_resolution:
        v = v_ori[:, 1:, :].permute(0, 2, 1).contiguous().view(bsz, embed_dim, patch_num, patch_num)
        v_multi_reso = multi_reso(v, geo, patch_num, 1.0)
        v_single_head = v_multi_reso.contiguous().view(1, embed_dim, geo["points_per_h"] * geo["points_per_w"])
    else:
        v_single_head = v_ori[:1, 1:, :].permute(0, 2, 1).contiguous()
    n = v_single_head.shape[-1]
    if remove_global:
        patch_features = v_single_head.permute(0, 2, 1)[0]  # a view: normalising it in place changes v
        feature_masks = remove_global_patch(patch_features, feature_masks, threshold,
                                            normalize_in_place=referring and multi_resolution)
    v_multi_head = v_single_head.contiguous().view(num_heads, head_dim, n).permute(0, 2, 1)
    keep_masks = torch.sum(feature_masks, dim=1) > 0
    feature_masks = feature_masks[keep_masks]
    attn_weights = feature_masks.unsqueeze(0).repeat(num_heads, 1, 1).to(v_multi_head.dtype)
    attn_output = torch.bmm(attn_weights, v_multi_head)  # (H, R, d)
    attn_output = attn_output.transpose(0, 1).contiguous().view(-1, embed_dim)
    attn_output = attn_layer.out_proj(attn_output)
    if referring:
        attn_output = attn_output + blk.mlp(blk.ln_2(attn_output))
    region_features = model.visual.ln_post(attn_output) @ model.visual.proj
    region_features = region_features / region_features.norm(dim=-1, keepdim=True)
    return region_features, torch.nonzero(keep_masks).squeeze(-1)


def pool_inputs_multi_reso(input_feature, geo, patch_num, multi_resolution):
    bsz, _, embed_dim = input_feature.shape
    if not multi_resolution:
        return input_feature
    x_ori = input_feature.permute(0, 2, 1).contiguous().view(bsz, embed_dim, patch_num, patch_num)
    x_multi_reso = multi_reso(x_ori, geo, patch_num, 0.5)
    return x_multi_reso.contiguous().view(1, embed_dim, geo["points_per_h"] * geo["points_per_w"]).permute(0, 2, 1)


def siglip_region_features(model, clip_inputs, geo, feature_masks, *, threshold=0.07, multi_resolution=True,
                           remove_global=True):
    trunk = model.visual.trunk
    attn_blk = trunk.attn_pool
    input_feature, _ = trunk.forward_intermediates(clip_inputs)
    patch_num = model.visual.image_size[0] // trunk.patch_embed.patch_size[0]
    x_input = pool_inputs_multi_reso(input_feature, geo, patch_num, multi_resolution)[:1]
    if remove_global:
        feature_masks = remove_global_patch(x_input[0], feature_masks, threshold)
    keep_masks = torch.sum(feature_masks, dim=1) > 0
    feature_masks = feature_masks[keep_masks]
    region_num = feature_masks.shape[0]
    _, N, C = x_input.shape
    q_latent = attn_blk.latent.expand(region_num, -1, -1)
    q = attn_blk.q(q_latent).reshape(region_num, attn_blk.latent_len, attn_blk.num_heads,
                                     attn_blk.head_dim).transpose(1, 2)
    x = x_input.expand(region_num, -1, -1)
    kv = attn_blk.kv(x).reshape(region_num, N, 2, attn_blk.num_heads, attn_blk.head_dim).permute(2, 0, 3, 1, 4)
    k, v = kv.unbind(0)
    q, k = attn_blk.q_norm(q), attn_blk.k_norm(k)
    attn_mask = feature_masks.unsqueeze(1).unsqueeze(1).repeat(1, attn_blk.num_heads, 1, 1)
    k = attn_blk.k_norm(k.mean(dim=-2, keepdim=True).mean(dim=-1, keepdim=True))
    k = k.repeat(1, 1, v.shape[-2], v.shape[-1])
    x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask > 0)
    x = x.transpose(1, 2).reshape(region_num, attn_blk.latent_len, C)
    x = attn_blk.proj(x)
    x = attn_blk.proj_drop(x)
    x = trunk.fc_norm(x)
    x = trunk.head_drop(x)
    image_features = x[:, 0]
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    return image_features, torch.nonzero(keep_masks).squeeze(-1)


def pe_region_features(model, clip_inputs, geo, feature_masks, *, threshold=0.07, multi_resolution=True,
                       remove_global=True):
    trunk = model.visual.trunk
    blk = trunk.attn_pool
    input_feature, _ = trunk.forward_intermediates(clip_inputs)  # ln_post'd tokens, CLS first
    input_feature = input_feature[:, trunk.num_prefix_tokens:]  # if use_cls_token: [:, 1:]
    patch_num = model.visual.image_size[0] // trunk.patch_embed.patch_size[0]
    x_input = pool_inputs_multi_reso(input_feature, geo, patch_num, multi_resolution)[:1]
    if remove_global:
        feature_masks = remove_global_patch(x_input[0], feature_masks, threshold)
    keep_masks = torch.sum(feature_masks, dim=1) > 0
    feature_masks = feature_masks[keep_masks]
    batch = feature_masks.shape[0]
    x = x_input.repeat(batch, 1, 1)
    # blk.attn(probe, k=layernorm(mean), v=x, key_padding_mask=masks <= 0): the key is one constant
    # vector, so the attention is uniform over the unmasked patches, whatever the probe.
    C = x.shape[-1]
    heads, d = blk.num_heads, C // blk.num_heads
    value = blk.kv(x)[..., C:]  # MHA's value in_proj
    allowed = (feature_masks > 0).float()
    attn = allowed / allowed.sum(-1, keepdim=True)
    out = torch.einsum("rn,rnc->rc", attn, value)
    out = blk.proj(out.view(batch, heads * d))  # MHA's out_proj
    region_features = trunk.head(out)  # x @ self.clip.visual.proj
    region_features = F.normalize(region_features, dim=-1)
    return region_features, torch.nonzero(keep_masks).squeeze(-1)


def redraw_biases(model, std: float = 0.5, seed: int = 0) -> int:
    """Random non-zero biases where TextRegion's formulas see them: the last block, the attention pool,
    the heads and the final norms. Random init leaves these at zero, which hides deviations."""
    gen = torch.Generator().manual_seed(seed)
    visual = model.visual
    mods = []
    if hasattr(visual, "transformer"):
        mods += [visual.transformer.resblocks[-1], visual.ln_post]
    if hasattr(visual, "trunk"):
        mods += [visual.trunk.attn_pool, visual.trunk.norm, visual.trunk.fc_norm, visual.trunk.head, visual.head]
        if hasattr(visual.trunk, "blocks"):
            mods.append(visual.trunk.blocks[-1])
    count = 0
    with torch.no_grad():
        for mod in mods:
            for name, p in mod.named_parameters():
                if name.endswith("bias") or name.endswith("in_proj_bias"):
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
                    count += 1
    if getattr(model, "logit_bias", None) is not None:
        with torch.no_grad():
            model.logit_bias.fill_(-10.0 + float(torch.randn(1, generator=gen)))
    return count


def cosine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.float(), b.float(), dim=-1)


__all__ = ["clip_region_features", "cosine_rows", "imrescale_bilinear", "official_feature_masks",
           "official_inputs", "pe_region_features", "redraw_biases", "siglip_region_features"]


# --- evaluation: model_semantic.py postprocess_result and get_cls_idx, eval_referring.py helpers ------
def get_cls_idx(lines):
    """The official get_cls_idx over the class file's lines."""
    num_cls = len(lines)
    class_names, class_indices = [], []
    for idx in range(num_cls):
        names_i = lines[idx].split('; ')
        class_names += names_i
        class_indices += [idx for _ in range(len(names_i))]
    class_names = [item.replace('\n', '') for item in class_names]
    return class_names, class_indices


def postprocess_result(region_logits, region_masks, ori_shape, num_cls, num_queries, region_logit_scale=50,
                       prob_thd=0.0, clip_logits=None):
    """The official postprocess_result (soft masks)."""
    region_masks = torch.clamp(region_masks, min=0, max=1)
    seg_logits = region_logits.unsqueeze(-1).unsqueeze(-1) * region_masks.unsqueeze(1)
    seg_logits = seg_logits.sum(0, keepdim=True)
    if clip_logits is not None:
        null_pixel = torch.nonzero(region_masks.sum(0) == 0, as_tuple=True)
        clip_logits = F.interpolate(clip_logits, size=region_masks.shape[-2:], mode='bilinear')
        clip_logits = clip_logits.to(dtype=seg_logits.dtype)
        seg_logits[:, :, null_pixel[0], null_pixel[1]] = clip_logits[:, :, null_pixel[0], null_pixel[1]]
    seg_logits = F.interpolate(seg_logits, size=ori_shape, mode='bilinear')
    seg_logits = torch.softmax(seg_logits * region_logit_scale, dim=1)
    if num_cls != num_queries:
        seg_fg = seg_logits[:, -num_cls + 1:]
        seg_bg = seg_logits[:, :-num_cls + 1].max(1)[0]
        seg_logits = torch.cat([seg_bg.unsqueeze(0), seg_fg], dim=1)
    seg_preds = seg_logits.argmax(1)
    if num_cls != num_queries or prob_thd != 0:
        seg_preds[seg_logits.max(1)[0] < prob_thd] = 0
    return seg_logits, seg_preds


def mask_to_bbox(binary_mask):
    coords = np.argwhere(binary_mask > 0)
    if coords.size == 0:
        return np.array([])
    y_coords, x_coords = coords[:, 0], coords[:, 1]
    return np.array([x_coords.min(), y_coords.min(), x_coords.max(), y_coords.max()])


def clean_mask_keep_largest(mask):
    num_labels, labels_im = cv2.connectedComponents(mask)
    max_label = 1 + np.argmax(np.bincount(labels_im.flat)[1:])
    return np.uint8(labels_im == max_label)


def custom_attn_csa(attn_layer, x):
    """custom_clip's custom_attn(..., csa=True) on LND input."""
    num_heads = attn_layer.num_heads
    _, bsz, embed_dim = x.size()
    head_dim = embed_dim // num_heads
    scale = head_dim ** -0.5
    q, k, v = F.linear(x, attn_layer.in_proj_weight, attn_layer.in_proj_bias).chunk(3, dim=-1)
    q = q.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    k = k.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    q_attn = torch.bmm(q, q.transpose(1, 2)) * scale
    k_attn = torch.bmm(k, k.transpose(1, 2)) * scale
    attn_weights = F.softmax(q_attn, dim=-1) + F.softmax(k_attn, dim=-1)
    attn_output = torch.bmm(attn_weights, v)
    attn_output = attn_output.transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    return attn_layer.out_proj(attn_output)


def get_clip_logits(model, clip_inputs, geo, query_features, multi_resolution=True):
    """model_semantic.get_CLIP_logits: (1, Q, points_per_h, points_per_w) dense CSA logits."""
    blk = model.visual.transformer.resblocks[-1]
    x = last_block_input(model, clip_inputs).permute(1, 0, 2)  # LND, as custom_clip
    x = x + custom_attn_csa(blk.attn, blk.ln_1(x))
    x = x + blk.mlp(blk.ln_2(x))
    x = x.permute(1, 0, 2)
    clip_outputs = model.visual.ln_post(x) @ model.visual.proj
    clip_outputs = clip_outputs / clip_outputs.norm(dim=-1, keepdim=True)
    clip_logits = clip_outputs[:, 1:] @ query_features.T.to(clip_outputs.dtype)
    patch_num = model.visual.image_size[0] // model.visual.patch_size[0]
    if multi_resolution:
        bsz, _, class_num = clip_logits.size()
        clip_logits = clip_logits.permute(0, 2, 1).contiguous().view(bsz, -1, patch_num, patch_num)
        logit_resize = F.interpolate(clip_logits[:1], [geo["points_per_h"], geo["points_per_w"]], mode="bilinear",
                                     align_corners=False)
        crop_id = 1
        for h_idx in range(geo["crop_num_h"]):
            for w_idx in range(geo["crop_num_w"]):
                y1, x1 = h_idx * patch_num, w_idx * patch_num
                logit_resize[:, :, y1:y1 + patch_num, x1:x1 + patch_num] += clip_logits[crop_id]
                crop_id += 1
        return logit_resize
    return clip_logits.permute(0, 2, 1).contiguous().view(1, -1, patch_num, patch_num)
