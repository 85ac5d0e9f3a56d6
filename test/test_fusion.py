"""Vectorized containment fusion against the reference's greedy loop (written here as the oracle)."""
import torch
from torchvision.ops import box_iou

from textregion_ros.masks.base import boxes_from_masks
from textregion_ros.masks.fusion import containment, fuse_groups, merge_by_owner


def greedy_oracle(binary, boxes, thresh=0.8, gate=0.2):
    m = binary.shape[0]
    b = binary.float()
    owner = list(range(m))
    open_ = [True] * m
    biou = box_iou(boxes, boxes)
    for i in range(m):
        if not open_[i]:
            continue
        open_[i] = False
        for j in range(m):
            if open_[j] and biou[i, j] > gate:
                inter = (b[i] * b[j]).sum()
                small = min(b[i].sum(), b[j].sum())
                if small > 0 and inter / small > thresh:
                    owner[j] = i
                    open_[j] = False
    return owner


def random_masks(seed, n=40, size=32):
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for k in range(n):
        x0, y0 = torch.randint(0, size - 4, (2,), generator=g).tolist()
        w, h = torch.randint(2, 16, (2,), generator=g).tolist()
        masks[k, y0:y0 + h, x0:x0 + w] = True
    return masks


def test_fusion_matches_the_greedy_reference():
    for seed in range(5):
        masks = random_masks(seed)
        boxes = boxes_from_masks(masks)
        owner = fuse_groups(masks.flatten(1), boxes, 0.8)
        assert owner.tolist() == greedy_oracle(masks.flatten(1), boxes), seed
        assert (owner != torch.arange(len(owner))).any(), "the case must exercise fusion"


def test_containment_and_merge_by_hand():
    a = torch.zeros(3, 4, 4)
    a[0, :2, :2] = 1  # 4 px
    a[1, :1, :1] = 1  # 1 px inside a[0]
    a[2, 2:, 2:] = 1  # disjoint
    c = containment(a.flatten(1))
    assert c[0, 1] == 1.0 and c[0, 2] == 0.0
    owner = fuse_groups(a.flatten(1) > 0, boxes_from_masks(a > 0), 0.8)
    assert owner.tolist() == [0, 0, 2]
    merged = merge_by_owner(a * torch.tensor([1.0, 2.0, 1.0])[:, None, None], owner)
    assert merged[0, 0, 0] == 2.0 and merged[0, 1, 1] == 1.0 and merged[2].sum() == 4


def test_empty_input():
    assert fuse_groups(torch.zeros(0, 16, dtype=torch.bool), torch.zeros(0, 4)).numel() == 0
