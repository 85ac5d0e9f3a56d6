"""CUDA paths (bf16 autocast, device-resident tensors); skipped without a GPU."""
import pytest
import torch

from textregion_ros.compose import instance_map
from textregion_ros.config import preset
from textregion_ros.encoders import create_encoder
from textregion_ros.masks.sam2_build import build_sam2_model
from textregion_ros.masks.sam2_everything import Sam2Everything
from textregion_ros.pipeline import Pipeline
from textregion_ros.eval.scene import make_scene

pytestmark = pytest.mark.gpu


def test_realtime_pipeline_on_cuda_keeps_tensors_on_device():
    torch.manual_seed(0)
    pipe = Pipeline(preset("realtime", random_weights=True, force_masks=32, pred_iou_thresh=0.0,
                           stability_score_thresh=0.0, vocabulary=("mug", "ball"), background=("wall",)))
    assert pipe.dtype == torch.bfloat16 and pipe.device.type == "cuda"
    r = pipe.process(make_scene().rgb, queries=["mug"])
    assert len(r) > 0 and r.tokens.is_cuda and r.masks.masks.is_cuda and r.classes.prob.is_cuda
    assert instance_map(r).is_cuda
    assert 0 <= r.groundings[0].prob <= 1


def test_cuda_generator_agrees_with_cpu():
    torch.manual_seed(0)
    model = build_sam2_model("tiny", random_weights=True, device="cpu")
    img = torch.from_numpy(make_scene(320, 240).rgb).permute(2, 0, 1).float() / 255
    kw = dict(points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0, box_nms_thresh=1.0,
              min_mask_area=0, fuse_masks=False)
    cpu = Sam2Everything(model, **kw).generate(img).at_frame() >= 0.5
    gpu = Sam2Everything(model.cuda(), **kw).generate(img.cuda()).at_frame().cpu() >= 0.5
    inter = (cpu & gpu).flatten(1).sum(1).float()
    union = (cpu | gpu).flatten(1).sum(1).float().clamp_min(1)
    assert (inter / union).mean() > 0.97


def test_value_features_match_cpu_in_fp32():
    torch.manual_seed(0)
    enc_cpu = create_encoder("ViT-B-16", random_weights=True)
    enc_gpu = create_encoder("ViT-B-16", random_weights=True, device="cuda")
    enc_gpu.model.load_state_dict(enc_cpu.model.state_dict())
    px = torch.randn(1, 3, 224, 224)
    a = enc_cpu.encode_values(px).values
    b = enc_gpu.encode_values(px.cuda()).values.cpu()
    assert ((a - b).norm() / a.norm()) < 1e-3


def test_compiled_pipeline_in_a_worker_thread_matches_eager():
    """The node runs inference on its own thread with compile: true (CUDA graphs)."""
    import threading

    kw = dict(random_weights=True, force_masks=16, pred_iou_thresh=0.0, stability_score_thresh=0.0,
              vocabulary=("mug", "ball"), background=("wall",), dtype="fp32")
    torch.manual_seed(0)
    eager = Pipeline(preset("realtime", compile=False, **kw))  # the realtime preset compiles by default
    assert eager.encoder.encode_values.__class__.__name__ == "method", "the reference must be eager"
    torch.manual_seed(0)
    compiled = Pipeline(preset("realtime", compile=True, **kw))
    assert compiled.encoder.encode_values.__class__.__name__ != "method"
    rgb = make_scene().rgb
    ref = eager.process(rgb, queries=["mug"])
    out = {}

    def work():
        for i in range(4):  # compile, record the graphs, then replay them
            out[i] = compiled.process(rgb, queries=["mug"])

    t = threading.Thread(target=work)
    t.start()
    t.join()
    last = out[3]
    assert len(last) == len(ref)
    # Inductor's kernels round differently from eager; the tokens must still agree as directions.
    cos = (last.tokens * ref.tokens).sum(-1)
    assert cos.min() > 0.995, cos.min()


def test_compose_on_cuda_matches_the_cpu():
    from textregion_ros.compose import ComposeRequest, compose

    torch.manual_seed(0)
    kw = dict(random_weights=True, force_masks=8, pred_iou_thresh=0.0, stability_score_thresh=0.0,
              vocabulary=("mug",), background=("wall",), compile=False, dtype="fp32")
    pipe = Pipeline(preset("realtime", **kw))
    rgb = make_scene().rgb
    r = pipe.process(rgb)
    image = torch.from_numpy(rgb).cuda()
    gpu = compose(r, image, ComposeRequest(instance=True, crops=True, overlay=True))
    assert gpu.instance.shape == (480, 640) and gpu.overlay.shape == (480, 640, 3)
    assert len(gpu.crop_data) == int(sum((b[2] - b[0]) * (b[3] - b[1]) for b in gpu.boxes))


def test_masked_quantiles_on_cuda_match_torch_nanquantile():
    from textregion_ros.geometry.points import masked_quantiles
    g = torch.Generator().manual_seed(1)
    values, members = torch.randn(3, 5000, generator=g), torch.rand(64, 5000, generator=g) < 0.3
    q = (0.02, 0.5, 0.98)
    got = masked_quantiles(values.cuda(), members.cuda(), q).cpu()
    want = torch.nanquantile(torch.where(members[:, None], values[None], torch.tensor(float("nan"))),
                             torch.tensor(q), dim=-1)
    assert torch.allclose(got, want, atol=1e-5)
