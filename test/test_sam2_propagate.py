"""Streaming SAM2 propagation against sam2's own SAM2VideoPredictor.propagate_in_video.

Both start from the same frames (the predictor's own loaded JPEG tensors) and the same first
mask, with the same random weights (random SAM2 cannot segment, but both must compute the same
thing). The predictor is built by sam2's builder and holds its own copy of the weights.
"""
import os

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from textregion_ros.masks.sam2_propagate import Sam2Propagator, video_model_like
from textregion_ros.eval.scene import moving_objects

FRAMES = 6
# Random SAM2 weights make later frames depend only weakly on the memory (starting from another
# object's mask moves the logits by ~1e-4), so logits are compared far tighter than that; the two
# implementations agree to ~3e-6 (test_the_comparison_sees_the_memory keeps this honest).
TOL = 2e-5


@pytest.fixture(scope="module")
def official_and_ours(sam2_tiny, tmp_path_factory):
    from sam2.build_sam import build_sam2_video_predictor

    from textregion_ros.masks.sam2_build import SAM2_MODELS

    folder = tmp_path_factory.mktemp("video")
    frames = moving_objects(FRAMES, width=320, height=240, objects=3, max_speed=12.0, seed=5)
    for i, f in enumerate(frames):
        Image.fromarray(f.rgb).save(os.path.join(folder, f"{i:05d}.jpg"), quality=95)
    first = torch.from_numpy(frames[0].masks[0])
    # At 512, the realtime preset's SAM2 input (sam2's image_size override, for both).
    official = build_sam2_video_predictor(SAM2_MODELS["tiny"][0], None, device="cpu",
                                          hydra_overrides_extra=["++model.image_size=512"])
    official.load_state_dict({k: v.clone() for k, v in sam2_tiny.state_dict().items()})
    official.eval()
    state = official.init_state(str(folder))
    official.add_new_mask(state, frame_idx=0, obj_id=1, mask=first)
    expect = {i: m[0, 0].clone() for i, _, m in official.propagate_in_video(state)}

    ours = Sam2Propagator(video_model_like(sam2_tiny, "tiny", "cpu", image_size=512))
    assert state["images"].shape[-1] == 512
    h, w = frames[0].rgb.shape[:2]
    up = lambda lg: F.interpolate(lg, size=(h, w), mode="bilinear", align_corners=False)[0, 0]  # noqa: E731
    got = {0: up(ours.start(state["images"][0], first))}
    for i in range(1, FRAMES):
        got[i] = up(ours.step(state["images"][i]))
    other = Sam2Propagator(ours.model)
    wrong = {0: up(other.start(state["images"][0], torch.from_numpy(frames[0].masks[1])))}
    for i in range(1, FRAMES):
        wrong[i] = up(other.step(state["images"][i]))
    return expect, got, ours, wrong


def test_streaming_masks_equal_propagate_in_video(official_and_ours):
    expect, got, _, _ = official_and_ours
    assert sorted(expect) == list(range(FRAMES))
    for i in range(FRAMES):
        a, b = expect[i] > 0, got[i] > 0
        union = (a | b).sum().item()
        iou = (a & b).sum().item() / union if union else 1.0
        assert iou >= 0.99, f"frame {i}: IoU {iou:.4f}"
        assert (expect[i] - got[i]).abs().max() <= TOL, f"frame {i} logits differ"
    assert (expect[0] > 0).sum() > 100  # the first frame carries the given mask (not a trivial empty case)


def test_shares_the_image_models_weights(sam2_tiny):
    video = video_model_like(sam2_tiny, "tiny", "cpu", image_size=512)
    a = dict(sam2_tiny.named_parameters())["sam_mask_decoder.iou_prediction_head.layers.0.weight"]
    b = dict(video.named_parameters())["sam_mask_decoder.iou_prediction_head.layers.0.weight"]
    assert a.data_ptr() == b.data_ptr()
    assert video.binarize_mask_from_pts_for_mem_enc and video.fill_hole_area == 8


def test_memory_stays_bounded_over_a_long_stream(official_and_ours, sam2_tiny):
    _, _, ours, _ = official_and_ours
    image = torch.zeros(3, 64, 64)
    small = Sam2Propagator(ours.model)
    small.keep = 3  # what matters is the pruning rule, not SAM2's real window of 16
    small.start(small.preprocess(image), torch.ones(64, 64, dtype=torch.bool))
    for _ in range(5):
        small.step(small.preprocess(image))
    assert sorted(small.memory["non_cond_frame_outputs"]) == [3, 4, 5]
    assert list(small.memory["cond_frame_outputs"]) == [0]


def test_step_before_start_returns_nothing(official_and_ours):
    _, _, ours, _ = official_and_ours
    fresh = Sam2Propagator(ours.model)
    assert fresh.step(torch.zeros(3, 8, 8)) is None


def test_the_comparison_sees_the_memory(official_and_ours):
    """Propagating from another object's mask must fail the comparison on every later frame."""
    expect, _, _, wrong = official_and_ours
    for i in range(1, FRAMES):
        assert (expect[i] - wrong[i]).abs().max() > 5 * TOL, f"frame {i}"
