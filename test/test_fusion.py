"""Vectorized soft-containment fusion against the official greedy loop (official_sam2.py)."""
import torch

from official_sam2 import fuse_overlap_masks
from textregion_ros.masks.fusion import fuse_groups, merge_by_owner, soft_containment
from sam2.utils.amg import batched_mask_to_box


def random_soft_masks(seed, n=40, size=32):
    """Clamped logits in [0, 3] with soft edges, in many nested and overlapping boxes."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, size, size)
    for k in range(n):
        x0, y0 = torch.randint(0, size - 4, (2,), generator=g).tolist()
        w, h = torch.randint(2, 16, (2,), generator=g).tolist()
        region = masks[k, y0:y0 + h, x0:x0 + w]
        level = float(torch.randint(1, 4, (1,), generator=g))  # 1, 2 or 3, as clamped logits saturate
        region.copy_(level - 0.2 * torch.rand(region.shape, generator=g))
    return masks


def test_fusion_matches_the_official_greedy_loop():
    for seed in range(6):
        masks = random_soft_masks(seed)
        boxes = batched_mask_to_box(masks > 0).float()
        owner = fuse_groups(masks.flatten(1), boxes, 0.8)
        anns = [{"segmentations": m, "bbox_xyxy": b.tolist()} for m, b in zip(masks, boxes)]
        merged, groups = fuse_overlap_masks(anns, 0.8)
        expect = list(range(len(masks)))
        for group in groups:
            for j in group:
                expect[j] = group[0]
        assert owner.tolist() == expect, seed
        assert (owner != torch.arange(len(owner))).any(), "the case must exercise fusion"
        ours = merge_by_owner(masks, owner)[owner == torch.arange(len(owner))]
        assert torch.equal(ours, torch.stack(merged))


def test_containment_is_soft_not_binary():
    """Binary containment of these two is 1.0 (b's support lies inside a's); the official soft one,
    sum(min) / min(sum), is 0.5 because a is weak where b is strong."""
    a = torch.zeros(2, 8, 8)
    a[0, :4, :4] = 1.0  # weak, 16 px
    a[1, :2, :4] = 2.0  # strong, 8 px inside a
    pair = torch.tensor([[0, 1]])
    assert soft_containment(a.flatten(1), pair).item() == 0.5
    boxes = batched_mask_to_box(a > 0).float()
    assert fuse_groups(a.flatten(1), boxes, 0.8).tolist() == [0, 1]  # not fused at 0.8
    assert fuse_groups(a.flatten(1), boxes, 0.4).tolist() == [0, 0]


def test_merge_by_hand_and_empty_input():
    a = torch.zeros(3, 6, 6)
    a[0, :3, :3] = 1
    a[1, :2, :2] = 1
    a[2, 4:, 4:] = 1
    owner = fuse_groups(a.flatten(1), batched_mask_to_box(a > 0).float(), 0.8)
    assert owner.tolist() == [0, 0, 2]
    merged = merge_by_owner(a * torch.tensor([1.0, 2.0, 1.0])[:, None, None], owner)
    assert merged[0, 0, 0] == 2.0 and merged[0, 2, 2] == 1.0 and merged[2].sum() == 4
    assert fuse_groups(torch.zeros(0, 16), torch.zeros(0, 4)).numel() == 0
