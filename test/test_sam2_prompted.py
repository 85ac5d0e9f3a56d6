"""Target mode's prompt decoder against stock sam2: SAM2ImagePredictor.predict on the same image."""
import numpy as np
import pytest
import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor

from textregion_ros.masks.sam2_everything import Sam2Everything
from textregion_ros.masks.sam2_prompted import PAD, Sam2Prompted
from textregion_ros.eval.scene import make_scene

PROMPTS = [  # (points (x, y) in frame pixels, labels, box or None)
    (np.array([[120.0, 80.0], [40.0, 150.0]]), np.array([1, 0]), None),
    (np.array([[200.0, 60.0], [30.0, 30.0]]), np.array([1, 1]), None),
    (np.array([[90.0, 110.0], [250.0, 170.0]]), np.array([1, 0]), np.array([60.0, 70.0, 180.0, 160.0])),
    (np.array([[150.0, 90.0], [10.0, 10.0]]), np.array([1, 0]), np.array([100.0, 40.0, 230.0, 140.0])),
]


@pytest.fixture(scope="module")
def frame(sam2_tiny):
    rgb = make_scene(width=256, height=192).rgb
    predictor = SAM2ImagePredictor(sam2_tiny)
    predictor.set_image(rgb)
    sam = Sam2Everything(sam2_tiny, points_per_side=2)
    feats = sam.encode(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    return rgb, predictor, sam, feats


@pytest.mark.parametrize("with_box", [False, True], ids=["points", "points_and_box"])
def test_batched_prompts_equal_the_predictor_one_by_one(frame, with_box):
    rgb, predictor, sam, feats = frame
    group = [p for p in PROMPTS if (p[2] is not None) == with_box]
    points = torch.tensor(np.stack([p[0] for p in group]))
    labels = torch.tensor(np.stack([p[1] for p in group]))
    boxes = torch.tensor(np.stack([p[2] for p in group])) if with_box else None
    ours = Sam2Prompted(sam).decode(feats, points, labels, rgb.shape[:2], boxes)
    full = ours.at_frame(sam, rgb.shape[:2])
    for b, (pts, lab, box) in enumerate(group):
        masks, iou, low = predictor.predict(point_coords=pts, point_labels=lab, box=box, multimask_output=True,
                                            return_logits=True, normalize_coords=True)
        assert np.abs(ours.low_res[b].clamp(-32, 32).numpy() - low).max() <= 1e-5
        assert np.abs(ours.iou[b].numpy() - iou).max() <= 1e-5
        assert np.abs(full[b].numpy() - masks).max() <= 1e-4  # the same upsampling of the same logits
    # Not degenerate: the prompts give different masks.
    assert (ours.low_res[0] - ours.low_res[1]).abs().max() > 1e-2


def test_prompts_of_different_sizes_share_a_batch_without_disturbing_each_other(frame):
    rgb, predictor, sam, feats = frame
    pts, lab, _ = PROMPTS[0]
    short = np.array([pts[0], [0.0, 0.0]])  # one point, padded to two
    padded = Sam2Prompted(sam).decode(feats, torch.tensor(np.stack([short, pts])),
                                      torch.tensor([[1, PAD], list(lab)]), rgb.shape[:2])
    assert padded.low_res.shape[:2] == (2, 3)
    _, _, low = predictor.predict(point_coords=pts, point_labels=lab, multimask_output=True, return_logits=True)
    assert np.abs(padded.low_res[1].clamp(-32, 32).numpy() - low).max() <= 1e-5
    with pytest.raises(ValueError, match="finite"):
        Sam2Prompted(sam).decode(feats, torch.tensor(pts[None]), torch.tensor(lab[None]), rgb.shape[:2],
                                 torch.tensor([[np.nan, 0.0, 1.0, 1.0]]))


def test_a_target_frame_on_sam2_grounds_among_the_predictors_own_answers(sam2_tiny, clip_encoder):
    """Pipeline.process_target with real sam2 modules (random weights): each query's region is one of the
    masks SAM2ImagePredictor gives for that query's prompts, and the frame's SAM2 image encoder ran once."""
    from textregion_ros.config import preset
    from textregion_ros.pipeline import Pipeline
    from textregion_ros.frames import target as target_frame

    rgb = make_scene(width=256, height=192).rgb
    sam = Sam2Everything(sam2_tiny, points_per_side=2)
    pipe = Pipeline(preset("cpu-lite", random_weights=True, segmentation="target", abstain_threshold=0.0),
                    encoder=clip_encoder, mask_source=sam)
    seen, encodes = [], []
    decode, encode = target_frame.decode_prompts, sam.encode
    target_frame.decode_prompts = lambda *a: (seen.extend(a[2]), decode(*a))[1]
    sam.encode = lambda img: (encodes.append(1), encode(img))[1]
    try:
        result = pipe.process_target(rgb, pipe.embed_queries(["red mug", "laptop"]))
    finally:
        target_frame.decode_prompts, sam.encode = decode, encode
    assert result.kind == "target" and encodes == [1] and len(result.groundings) == 2
    predictor = SAM2ImagePredictor(sam2_tiny)
    predictor.set_image(rgb)
    for q, g in enumerate(result.groundings):
        assert 0 <= g.region < len(result) and g.found  # abstain_threshold 0: every query has a region
        answers = []
        for p in (p for p in seen if p.query == q):
            _, _, low = predictor.predict(point_coords=p.points.numpy(), point_labels=p.labels.numpy(),
                                          box=None if p.box is None else p.box.numpy(), multimask_output=True,
                                          return_logits=True)
            answers.extend(low)
        chosen = result.masks.masks[g.region].numpy()
        assert min(np.abs(chosen - a.clip(-32, 32)).max() for a in answers) <= 1e-4
