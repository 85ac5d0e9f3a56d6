"""Everything a frame publishes, composed on the device, then one host transfer.

The per-region outputs (boxes, areas, 3D medians, mask crops), the instance map and the overlay
all derive from the regions' masks at frame resolution. Those are never held for all regions at
once: regions are upsampled in chunks sized to a fixed element budget, so a 4000x4000 frame costs
the same peak memory per chunk as a VGA one costs in total. Mask crops are packed in one
boolean-index per chunk (region-major, row-major: exactly the concatenated crops), and every
array crosses to the host in a single copy of one byte buffer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .geometry import region_stats, target_geometry
from .masks.base import boxes_from_masks, dilate
from .results import FrameResult

# Elements of frame-resolution work held at once (float32: 128 MB).
CHUNK_ELEMENTS = 32 * 1024 * 1024


@dataclass
class ComposeRequest:
    instance: bool = False  # (H, W) uint16 region id + 1
    crops: bool = False  # packed mono8 crops of every region's mask
    overlay: bool = False  # (H, W, 3) uint8 blend of the masks over the image
    depth: Optional[torch.Tensor] = None  # (H, W) metres on the device, NaN/0 = hole
    K: Optional[np.ndarray] = None  # (3, 3) intrinsics for ``depth``
    depth_stride: int = 2
    grounded: int = -1  # region to highlight in the overlay
    alpha: float = 0.45
    colors: Optional[torch.Tensor] = None  # (R, 3) uint8 per region, default palette by index
    target: bool = False  # the grounded region's cleaned cloud and boxes (needs depth and grounded >= 0)
    max_points: int = 20000  # cap on the target's cloud


@dataclass
class FrameOutputs:
    """Host arrays of one frame; built by compose(), shared by every message."""
    label: np.ndarray  # (R,) label index
    prob: np.ndarray
    cosine: np.ndarray
    boxes: np.ndarray  # (R, 4) int64 xyxy, exclusive max; zeros for empty masks
    area: np.ndarray  # (R,) pixels
    points: Optional[np.ndarray] = None  # (R, 3) metres, NaN without valid depth
    sizes: Optional[np.ndarray] = None  # (R, 3) metres, extent of each region's depth points
    instance: Optional[np.ndarray] = None  # (H, W) uint16
    overlay: Optional[np.ndarray] = None  # (H, W, 3) uint8
    crop_data: Optional[np.ndarray] = None  # concatenated crops, uint8 0/1 (in score order)
    crop_start: Optional[np.ndarray] = None  # (R,) where region i's crop starts in crop_data
    colors: Optional[np.ndarray] = None  # (R, 3) uint8
    track_ids: Optional[np.ndarray] = None  # (R,) uint32 (0 = untracked), from Pipeline.track
    target: Optional["HostTarget"] = None  # the grounded region's 3D (ComposeRequest.target)
    timings: Dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.label)

    def crop(self, i: int) -> np.ndarray:
        """Region i's mask inside its box, (h, w) uint8 0/1 (a view into the packed buffer)."""
        x0, y0, x1, y1 = (int(v) for v in self.boxes[i])
        start = int(self.crop_start[i])
        return self.crop_data[start:start + (y1 - y0) * (x1 - x0)].reshape(y1 - y0, x1 - x0)


@dataclass
class HostTarget:
    """geometry.TargetGeometry on the host (optical frame)."""
    points: np.ndarray  # (N, 3) float32
    colors: Optional[np.ndarray]  # (N, 3) uint8
    centroid: np.ndarray
    aabb_min: np.ndarray
    aabb_max: np.ndarray
    obb_centre: np.ndarray
    obb_axes: np.ndarray  # (3, 3) columns x y z
    obb_size: np.ndarray

    @staticmethod
    def pack(t) -> torch.Tensor:
        return torch.cat([t.centroid, t.aabb_min, t.aabb_max, t.obb_centre, t.obb_axes.reshape(-1), t.obb_size]).float()

    @classmethod
    def unpack(cls, points, colors, packed: np.ndarray) -> "HostTarget":
        v = packed.astype(np.float64)
        return cls(points, colors, v[0:3], v[3:6], v[6:9], v[9:12], v[12:21].reshape(3, 3), v[21:24])


def palette(n: int, device=None) -> torch.Tensor:
    """n distinct RGB colors, (n, 3) uint8 (colors_for indices 0..n-1)."""
    return colors_for(torch.arange(max(n, 1), device=device))


def colors_for(index: torch.Tensor) -> torch.Tensor:
    """A color per integer (golden-ratio hues, HSV s=0.75 v=0.95): neighbours differ most."""
    h = (index.to(torch.float64) * 0.618034) % 1.0
    s, v = 0.75, 0.95
    k = torch.tensor([5.0, 3.0, 1.0], dtype=torch.float64, device=index.device)
    kk = (k[None] + h[:, None] * 6.0) % 6.0
    rgb = v - v * s * torch.clamp(torch.minimum(kk, 4.0 - kk), 0.0, 1.0)
    return (rgb * 255).to(torch.uint8)


UNTRACKED_COLOR = (170, 170, 170)


def region_colors(result: FrameResult, device=None) -> torch.Tensor:
    """(R, 3) uint8: by track id when tracked, so a colour stays with its object (grey until
    confirmed); by region index otherwise."""
    if result.track_ids is None:
        return palette(len(result), device)
    ids = torch.as_tensor(result.track_ids.astype(np.int64), device=device)
    colors = colors_for(ids)
    grey = torch.tensor(UNTRACKED_COLOR, dtype=torch.uint8, device=device)
    return torch.where((ids == 0)[:, None], grey, colors)


def _chunks(r: int, hw: Tuple[int, int]) -> List[Tuple[int, int]]:
    step = max(1, CHUNK_ELEMENTS // max(hw[0] * hw[1], 1))
    return [(s, min(s + step, r)) for s in range(0, r, step)]


def _int_boxes(binary: torch.Tensor) -> torch.Tensor:
    """(C, H, W) bool -> (C, 4) int64 xyxy exclusive; zeros where empty."""
    return boxes_from_masks(binary).long()


def _to_host(tensors: Dict[str, Optional[torch.Tensor]]) -> Dict[str, Optional[np.ndarray]]:
    """One device->host copy for all arrays, by name: concatenate their bytes, copy once, split on the host."""
    present = {k: t.contiguous() for k, t in tensors.items() if t is not None}
    out: Dict[str, Optional[np.ndarray]] = {k: None for k in tensors}
    if not present:
        return out
    buf = torch.cat([t.reshape(-1).view(torch.uint8) for t in present.values()]).cpu().numpy()
    pos = 0
    for k, src in present.items():
        n = src.numel() * src.element_size()
        dtype = torch.empty((), dtype=src.dtype).numpy().dtype
        out[k] = buf[pos:pos + n].view(dtype).reshape(tuple(src.shape))
        pos += n
    return out


@torch.inference_mode()
def compose(result: FrameResult, image: Optional[torch.Tensor], req: ComposeRequest) -> FrameOutputs:
    """FrameResult (+ the frame as an (H, W, 3) uint8 device tensor for the overlay) -> FrameOutputs."""
    t = compose_on_device(result, image, req)
    tg = t.pop("target")
    if not req.instance:
        t["instance"] = None  # the overlay needed it on the device; nobody reads it on the host
    t.update(label=result.classes.label, prob=result.classes.prob.float(), cosine=result.classes.cosine.float())
    if tg is not None:
        t.update(target_points=tg.points.float(), target_colors=tg.colors, target_pack=HostTarget.pack(tg))
    h = _to_host(t)
    if h["instance"] is not None:
        h["instance"] = h["instance"].view(np.uint16)
    target = HostTarget.unpack(h.pop("target_points"), h.pop("target_colors"), h.pop("target_pack")) \
        if tg is not None else None
    return FrameOutputs(**h, track_ids=result.track_ids, target=target)


@torch.inference_mode()
def compose_on_device(result: FrameResult, image: Optional[torch.Tensor], req: ComposeRequest
                      ) -> Dict[str, Optional[torch.Tensor]]:
    """The arrays of compose(), still on the device (the library's FrameResult methods use these too)."""
    h, w = result.frame_hw
    dev = result.tokens.device
    r = len(result)
    order = torch.argsort(result.classes.prob, descending=True, stable=True)  # ties go to the higher score
    boxes = torch.zeros((r, 4), dtype=torch.int64, device=dev)
    area = torch.zeros(r, dtype=torch.int64, device=dev)
    points = extents = target = None
    if req.depth is not None and req.K is not None:
        points = torch.full((r, 3), float("nan"), device=dev)
        extents = torch.full((r, 3), float("nan"), device=dev)
        K = torch.as_tensor(req.K, dtype=torch.float64)
    best = torch.full((h, w), -float("inf"), device=dev) if req.instance or req.overlay else None
    inst = torch.zeros((h, w), dtype=torch.int16, device=dev) if best is not None else None
    crop_parts: List[torch.Tensor] = []
    crop_start = torch.zeros(r, dtype=torch.int64, device=dev) if req.crops else None
    packed = torch.zeros((), dtype=torch.int64, device=dev)  # bytes packed so far, kept on the device
    for a, b in _chunks(r, (h, w)):
        idx = order[a:b]
        # Logits stay logits: logit > 0 is sigmoid >= 0.5, and the max logit is the max probability,
        # so no sigmoid over C x H x W is needed.
        prob = frame_scores(result, idx, (h, w))
        binary = prob > 0 if result.masks.is_logits else prob >= 0.5
        bx = _int_boxes(binary)
        boxes[idx] = bx
        area[idx] = binary.sum((1, 2))
        if points is not None:
            points[idx], extents[idx] = region_stats(binary, req.depth, K, stride=max(1, int(req.depth_stride)))
        if best is not None:
            cmax, carg = prob.max(0)
            better = cmax > best  # strict: an earlier (higher-scoring) region keeps a tie
            best = torch.where(better, cmax, best)
            inst = torch.where(better, (idx[carg] + 1).to(torch.int16), inst)
        if req.crops:
            sizes = (bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1])
            crop_start[idx] = packed + torch.cumsum(sizes, 0) - sizes
            packed = packed + sizes.sum()
            crop_parts.append(_pack_crops(binary, bx))
        del prob, binary
    if req.target and points is not None and 0 <= req.grounded < r:
        g = frame_scores(result, torch.tensor([req.grounded], device=dev), (h, w))[0]
        target = target_geometry(g > 0 if result.masks.is_logits else g >= 0.5, req.depth, K, image,
                                  max_points=req.max_points)
    if inst is not None:
        covered = best > 0 if result.masks.is_logits else best >= 0.5
        inst = torch.where(covered, inst, torch.zeros_like(inst))
    crop_data = None
    if req.crops:
        crop_data = torch.cat(crop_parts) if crop_parts else torch.zeros(0, dtype=torch.uint8, device=dev)
    colors = req.colors if req.colors is not None else region_colors(result, dev)
    overlay = None
    if req.overlay and image is not None:
        overlay = draw_overlay_device(image, inst, colors, req.alpha, result, req.grounded)
    return {"boxes": boxes, "area": area, "points": points, "sizes": extents, "instance": inst, "overlay": overlay,
            "crop_data": crop_data, "crop_start": crop_start, "colors": colors, "target": target}


@torch.inference_mode()
def instance_map(result: FrameResult) -> torch.Tensor:
    """(H, W) int32: region id + 1 where that region's soft mask is highest; 0 where all are < 0.5.
    Ties go to the higher-scoring region. Computed as the node computes it."""
    return compose_on_device(result, None, ComposeRequest(instance=True))["instance"].to(torch.int32)


@torch.inference_mode()
def boxes_and_areas(result: FrameResult) -> Tuple[torch.Tensor, torch.Tensor]:
    """(R, 4) float xyxy pixel boxes (exclusive max) and (R,) pixel areas of the masks >= 0.5."""
    t = compose_on_device(result, None, ComposeRequest())
    return t["boxes"].float(), t["area"]


@torch.inference_mode()
def region_crop(result: FrameResult, i: int) -> np.ndarray:
    """Region i's mask inside its box, (h, w) uint8 0/1, computed on demand from the low-res mask."""
    m = result.masks.select(torch.tensor([i], device=result.tokens.device)).at_frame(result.frame_hw)[0] >= 0.5
    x0, y0, x1, y1 = (int(v) for v in _int_boxes(m[None])[0])
    return m[y0:y1, x0:x1].to(torch.uint8).cpu().numpy()


def _pack_crops(binary: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Each mask inside its box, concatenated in order, as uint8 0/1.

    On a GPU one boolean gather does it (C order walks region by region, row by row). On the CPU
    that gather scans every pixel of every mask (125 ms at 64 x 640 x 480), while copying each box's
    rows is plain memcpy, and there is no device transfer to save, so it slices instead.
    """
    if binary.is_cuda:
        ys = torch.arange(binary.shape[1], device=binary.device)[None, :]
        xs = torch.arange(binary.shape[2], device=binary.device)[None, :]
        rows_in = (ys >= boxes[:, 1, None]) & (ys < boxes[:, 3, None])
        cols_in = (xs >= boxes[:, 0, None]) & (xs < boxes[:, 2, None])
        return binary[rows_in[:, :, None] & cols_in[:, None, :]].to(torch.uint8)
    parts = [binary[i, y0:y1, x0:x1].reshape(-1) for i, (x0, y0, x1, y1) in enumerate(boxes.tolist())]
    return torch.cat(parts).to(torch.uint8) if parts else binary.new_zeros(0, dtype=torch.uint8)


def frame_scores(result: FrameResult, idx: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    """(C, H, W) at frame resolution: mask logits (SAM2) or soft masks in [0, 1] (others)."""
    ms = result.masks
    if len(idx) == 0:
        return ms.masks.new_zeros((0, *hw))
    up = F.interpolate(ms.masks[idx][:, None].float(), size=hw, mode="bilinear", align_corners=False)[:, 0]
    return up if ms.is_logits else up.clamp_(0.0, 1.0)


def _outline(ids: torch.Tensor) -> torch.Tensor:
    """Pixels whose right or lower neighbour belongs to another region (or to none)."""
    edge = torch.zeros_like(ids, dtype=torch.bool)
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return edge & (ids > 0)


def draw_overlay_device(image: torch.Tensor, inst: torch.Tensor, colors: torch.Tensor, alpha: float,
                        result: FrameResult, grounded: int) -> torch.Tensor:
    """Masks blended over the image with outlines, the grounded region's border thick and green."""
    img = image.float()
    ids = inst.long()
    table = torch.cat([torch.zeros((1, 3), dtype=torch.uint8, device=img.device), colors.to(img.device)])
    color = table[ids].float()  # (H, W, 3)
    on = (ids > 0)[..., None]
    out = torch.where(on, img * (1.0 - alpha) + color * alpha, img)
    out = torch.where(_outline(ids)[..., None], color, out)
    if 0 <= grounded < len(result):
        g = result.masks.select(torch.tensor([grounded], device=img.device)).at_frame(result.frame_hw)[0] >= 0.5
        thick = dilate(g[None].float(), 3)[0] > 0
        border = thick & ~g
        out = torch.where(border[..., None], torch.tensor([0.0, 255.0, 0.0], device=img.device), out)
    return out.clamp_(0, 255).to(torch.uint8)
