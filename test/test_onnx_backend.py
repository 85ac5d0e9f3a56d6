"""The onnxruntime backend against torch: exported graphs of random-weight models (every weight and bias
non-zero), loaded through the backend's own path (manifest, weights fingerprint, session), on the CPU.

The reference is the torch pipeline on the same models in the same process: the same regions, tokens at
cosine >= 0.9999, mask logits within 1e-4, target mode's prompted masks too. Then the graphs that must not
load: missing, truncated, foreign, stale, and providers that are not installed.
"""
import json
import os

import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime is a dependency (requirements.txt); not installed here")

from textregion_ros.backends import attach_graphs  # noqa: E402
from textregion_ros.backends.export import export  # noqa: E402
from textregion_ros.backends.manifest import GRAPH, MANIFEST, GraphUnavailableError  # noqa: E402
from textregion_ros.config import preset  # noqa: E402
from textregion_ros.encoders import create_encoder  # noqa: E402
from textregion_ros.eval.scene import make_scene  # noqa: E402
from textregion_ros.masks.sam2_build import build_sam2_model  # noqa: E402
from textregion_ros.masks.sam2_everything import Sam2Everything  # noqa: E402
from textregion_ros.frames.image import image_to_tensor  # noqa: E402
from textregion_ros.masks import given_masks  # noqa: E402
from textregion_ros.pipeline import Pipeline  # noqa: E402
from textregion_ros.tokens import encode_value_map, region_tokens  # noqa: E402

# PE's smallest (T) keeps the test short: the family's code path is the same at every size.
FAMILIES = {"clip": "ViT-B-16", "siglip2": "ViT-B-16-SigLIP2", "pe": "PE-Core-T-16-384"}


def nonzero(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every weight and bias non-zero: random init leaves biases (and some scales) at zero, which would hide a
    graph that drops them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
            p[p == 0] = 0.01  # a weight and its noise that cancel in fp32 (one in ~10^7)
    assert all(bool((p != 0).all()) for p in module.parameters())
    return module


def config(model: str, root, **kw):
    return preset("cpu-lite", encoder_model=model, random_weights=True, onnx_dir=str(root), **kw)


@pytest.fixture(scope="module")
def sam2(tmp_path_factory):
    """SAM2-tiny at the cpu-lite preset's 512 with its graphs exported (both SAM2 units, once per module)."""
    root = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    cfg = config("ViT-B-16", root)
    sam = Sam2Everything.from_config(cfg, torch.device("cpu"))
    nonzero(sam.model, 1)
    # Random weights predict low IoUs and stabilities, and alike masks that NMS would cut to one: with those
    # off, the area filter, fusion and the cap by score still decide, on logits from the two backends.
    sam.pred_iou_thresh = sam.stability_score_thresh = 0.0
    sam.box_nms_thresh = 1.0
    export(cfg, str(root), ["sam2_image", "sam2_prompt"], sam=sam, log=lambda _: None)
    return sam, root


def detach(enc, sam) -> None:
    enc.trunk_graph = None
    if sam is not None:
        sam.image_graph = sam.prompt_graph = None


def run_both(pipe, enc, sam, model, root, frame):
    """``frame(pipe)`` on torch, then on the exported graphs attached through the backend's loading path."""
    ref = frame(pipe)
    lines = []
    try:
        used = attach_graphs(config(model, root, sam2_backend="onnxruntime", encoder_backend="onnxruntime"),
                             enc, sam, lines.append)
        got = frame(pipe)
    finally:
        detach(enc, sam)
    want = {"encoder": "onnxruntime"} if sam is None else {"sam2": "onnxruntime", "encoder": "onnxruntime"}
    assert used == want and len(lines) == len(want), lines
    return ref, got


def same_tokens(ref, got) -> None:
    assert torch.equal(got.kept, ref.kept) if hasattr(ref, "kept") else True
    assert got.tokens.shape == ref.tokens.shape and len(ref.tokens) >= 3
    cos = torch.nn.functional.cosine_similarity(got.tokens, ref.tokens, dim=-1)
    assert float(cos.min()) >= 0.9999, float(cos.min())


def test_clip_and_sam2_on_onnxruntime_keep_the_regions_tokens_and_masks_of_torch(sam2):
    """Everything-mode and target mode, with every exported unit: SAM2's image encoder and prompt decoder and
    CLIP's trunk."""
    sam, root = sam2
    torch.manual_seed(2)
    enc = create_encoder("ViT-B-16", random_weights=True)
    nonzero(enc.model, 3)
    cfg = config("ViT-B-16", root, sam2_backend="torch", encoder_backend="torch")
    export(cfg, str(root), ["trunk"], encoder=enc, log=lambda _: None)
    rgb = make_scene(width=320, height=240).rgb
    pipe = Pipeline(cfg, encoder=enc, mask_source=sam)
    queries = pipe.embed_queries(["red mug", "blue ball"])
    ref, got = run_both(pipe, enc, sam, "ViT-B-16", root,
                        lambda p: (p.process(rgb, query_embeddings=queries), p.process_target(rgb, queries)))
    for r, g in zip(ref, got):
        assert g.masks.counts == r.masks.counts, "the same candidates pass every filter"
        assert g.masks.masks.shape == r.masks.masks.shape
        assert (g.masks.masks - r.masks.masks).abs().max() <= 1e-4
        assert [x.region for x in g.groundings] == [x.region for x in r.groundings]
    assert len(ref[0].masks) >= 3, "random weights left too few regions for the check to mean anything"
    same_tokens(ref[0], got[0])


@pytest.mark.parametrize("family", ["siglip2", "pe"])
def test_the_other_families_trunks_on_onnxruntime_give_the_tokens_of_torch(sam2, family):
    """SigLIP2's and PE's trunks (the attention-pool families) on the same regions, given as masks."""
    _, root = sam2
    torch.manual_seed(4)
    model = FAMILIES[family]
    enc = create_encoder(model, random_weights=True)
    nonzero(enc.model, 5)
    cfg = config(model, root, sam2_backend="torch", encoder_backend="torch", mask_source="given")
    export(cfg, str(root), ["trunk"], encoder=enc, log=lambda _: None)
    scene = make_scene(width=320, height=240)
    h, w = scene.object_mask.shape
    masks = torch.zeros(4, h, w)
    masks[0] = torch.from_numpy(scene.object_mask).float()  # the mug
    masks[1, int(h * 0.62):] = 1  # the floor
    masks[2, : h // 2, : w // 2] = 1  # a quadrant of wall
    masks[3, :, 2 * w // 3:] = 1  # the right third, across wall, book and floor
    image = image_to_tensor(scene.rgb, torch.device("cpu"))

    def tokens(_):  # the pipeline's token stage (Pipeline.process without the text side, which needs a tokenizer)
        fmap = encode_value_map(enc, image, cfg.tiles, cfg.use_global_view, enc.default_global_weight)
        return region_tokens(enc, fmap, given_masks(masks).patch_weights(fmap.grid_hw), False, 0.07, cfg.clip_head)
    ref, got = run_both(None, enc, None, model, root, tokens)
    same_tokens(ref, got)


def test_the_manifest_records_what_the_graph_was_made_from(sam2):
    _, root = sam2
    (unit,) = [d for d in os.listdir(root) if d.startswith("sam2_prompt-")]
    with open(os.path.join(root, unit, MANIFEST)) as f:
        m = json.load(f)
    assert m["model"] == "tiny" and m["input_size"] == 512 and m["dtype"] == "fp32" and m["opset"] == 17
    assert m["inputs"] == ["image_embed", "high_res_0", "high_res_1", "coords", "labels"]
    assert {"torch", "onnx", "textregion_ros"} <= set(m["versions"]) and len(m["graph_sha256"]) == 64


def broken_copy(sam2, tmp_path, how: str) -> str:
    """A copy of the exported SAM2 graphs with one thing wrong -> its root."""
    import shutil
    _, root = sam2
    dst = tmp_path / "onnx"
    shutil.copytree(root, dst)
    image = next(p for p in dst.iterdir() if p.name.startswith("sam2_image-"))
    prompt = next(p for p in dst.iterdir() if p.name.startswith("sam2_prompt-"))
    if how == "truncated":
        data = (image / GRAPH).read_bytes()
        (image / GRAPH).write_bytes(data[: len(data) // 2])
    elif how == "foreign":  # a valid graph of another unit, under this unit's manifest
        shutil.copy(prompt / GRAPH, image / GRAPH)
    elif how == "other_size":
        m = json.loads((image / MANIFEST).read_text())
        m["input_size"] = 1024
        (image / MANIFEST).write_text(json.dumps(m))
    elif how == "missing":
        shutil.rmtree(image)
    return str(dst)


@pytest.mark.parametrize("how,reason", [("missing", "no manifest"), ("truncated", "does not match its manifest"),
                                        ("foreign", "does not match its manifest"),
                                        ("other_size", "input_size is 1024, the configuration needs 512")])
def test_a_broken_graph_fails_with_the_reason_and_the_export_command(sam2, tmp_path, how, reason):
    sam, _ = sam2
    root = broken_copy(sam2, tmp_path, how)
    with pytest.raises(GraphUnavailableError) as err:
        attach_graphs(config("ViT-B-16", root, sam2_backend="onnxruntime", encoder_backend="torch"), None, sam)
    assert reason in str(err.value) and "textregion-export --units sam2_image sam2_prompt" in str(err.value)
    assert sam.image_graph is None and sam.prompt_graph is None, "nothing half-attached"
    lines = []  # auto: torch, and a line that says why (never a silent fallback)
    used = attach_graphs(config("ViT-B-16", root, sam2_backend="auto", encoder_backend="torch"), None, sam,
                         lines.append)
    assert used == {"sam2": "torch"} and len(lines) == 1 and reason in lines[0] and "auto: torch" in lines[0]


def test_other_weights_make_the_graph_stale(sam2):
    sam, root = sam2
    other = Sam2Everything(build_sam2_model("tiny", random_weights=True), input_size=512)
    with pytest.raises(GraphUnavailableError, match="stale: weights_fingerprint"):
        attach_graphs(config("ViT-B-16", root, sam2_backend="onnxruntime", encoder_backend="torch"), None, other)


def test_providers_not_installed_are_reported_once_and_the_next_is_used(sam2):
    from textregion_ros.backends import ort
    sam, root = sam2
    ort._reported.clear()
    lines = []
    cfg = config("ViT-B-16", root, sam2_backend="onnxruntime", encoder_backend="torch",
                 onnx_providers=("openvino", "cuda", "cpu"))
    import logging

    class Catch(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())
    handler = Catch()
    logging.getLogger("textregion_ros.backends").addHandler(handler)
    try:
        attach_graphs(cfg, None, sam, lambda _: None)
        attach_graphs(cfg, None, sam, lambda _: None)
    finally:
        logging.getLogger("textregion_ros.backends").removeHandler(handler)
        detach_sam = sam.image_graph.session.get_providers()
        sam.image_graph = sam.prompt_graph = None
    assert detach_sam == ["CPUExecutionProvider"]
    # openvino is not installed here: reported once for two loads; cuda is passed over on a CPU device
    assert sum("openvino" in line for line in lines) == 1 and not any("provider cuda" in line for line in lines)
    with pytest.raises(GraphUnavailableError, match="none of onnx_providers"):
        attach_graphs(config("ViT-B-16", root, sam2_backend="onnxruntime", encoder_backend="torch",
                             onnx_providers=("openvino", "tensorrt")), None, sam)
    assert sam.image_graph is None
    with pytest.raises(ValueError, match="onnx_providers"):
        config("ViT-B-16", root, onnx_providers=("cuda", "tpu"))
    assert config("ViT-B-16", root, onnx_providers=()).onnx_providers == ()  # a dumped file's [] = the default


def test_export_reads_real_weights_from_the_hub_cache_offline_and_the_node_config_loads_them(tmp_path):
    """textregion-export, as a user runs it (a subprocess, HF_HUB_OFFLINE=1, their own `ros2 param dump` as
    --params), reads CLIP's and SAM2's checkpoints from a local Hugging Face cache under their real repo ids
    and file names; the encoder loaded from the same cache then takes the graph (its fingerprint matches)."""
    import subprocess
    import sys

    from safetensors.torch import save_file
    from test_weights import ROOT, hf_cache_file

    hub = str(tmp_path / "hub")
    torch.manual_seed(7)
    enc = create_encoder("ViT-B-16", weights="openai", random_weights=True)
    save_file({k: v.contiguous() for k, v in nonzero(enc.model, 8).state_dict().items()},
              hf_cache_file(hub, "timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors"))
    sam = build_sam2_model("tiny", random_weights=True)
    torch.save({"model": sam.state_dict()}, hf_cache_file(hub, "facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt"))
    dump = tmp_path / "params.yaml"  # what `ros2 param dump /textregion` writes, node-only keys and all
    dump.write_text("/textregion:\n  ros__parameters:\n    encoder_model: ViT-B-16\n    encoder_weights: openai\n"
                    "    sam2_model: tiny\n    sam2_input_size: 512\n    max_rate: 5.0\n    use_sim_time: false\n")
    onnx = str(tmp_path / "onnx")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": hub,
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # One process (one start-up): the command as a user runs it, then the backend's loading path on the encoder
    # the node's loader builds from the same cache (Pipeline does the same with its own encoder).
    code = f"""
from textregion_ros.backends import attach_graphs
from textregion_ros.backends.export import main
from textregion_ros.config import preset
from textregion_ros.encoders import create_encoder
rc = main(["--preset", "cpu-lite", "--params", {str(dump)!r}, "--units", "sam2_prompt", "trunk",
           "--onnx-dir", {onnx!r}])
print("RC", rc)
cfg = preset("cpu-lite", onnx_dir={onnx!r}, encoder_backend="onnxruntime")
enc = create_encoder(cfg.encoder_model, cfg.encoder_weights)
print("USED", attach_graphs(cfg, enc, None, print))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "RC 0" in out.stdout, (out.stdout + out.stderr)[-3000:]
    assert "trunk: " in out.stdout and "sam2_prompt: " in out.stdout
    assert "USED {'encoder': 'onnxruntime'}" in out.stdout, out.stdout[-2000:]
    with open(os.path.join(onnx, "trunk-ViT-B-16-224-fp32", MANIFEST)) as f:
        manifest = json.load(f)
    assert manifest["weights"] == "openai"
    from textregion_ros.backends.manifest import weights_fingerprint
    assert manifest["weights_fingerprint"] == weights_fingerprint(enc.model.visual), "the cached weights, not others"


def test_bound_inputs_and_outputs_give_what_a_plain_run_gives(sam2):
    """The I/O binding path (CUDA's: tensors stay where torch keeps them) exercised on the CPU: the first run of
    an input shape learns the output shapes, the next ones are bound, for two prompt batch sizes."""
    from textregion_ros.backends import ort
    from textregion_ros.backends.manifest import unit_dir
    sam, root = sam2
    cpu = torch.device("cpu")
    path = os.path.join(unit_dir(str(root), "sam2_prompt", "tiny", 512, "fp32"), GRAPH)
    plain = ort.OrtUnit(ort.open_session(path, ["cpu"], cpu), cpu)
    bound = ort.OrtUnit(ort.open_session(path, ["cpu"], cpu), cpu)
    bound.bound = True
    calls = []
    real = bound._run_bound
    bound._run_bound = lambda *a: calls.append(1) or real(*a)
    with torch.inference_mode():
        feats = sam.encode(torch.rand(3, 120, 160))
        for b in (5, 2, 5, 2):
            coords, labels = torch.rand(b, 2, 2) * 1024, torch.tensor([[1, 0]] * b, dtype=torch.int32)
            want = plain(feats.image_embed, *feats.high_res, coords, labels)
            got = bound(feats.image_embed, *feats.high_res, coords, labels)
            assert [t.shape for t in got] == [(b, 4, 128, 128), (b, 4)]
            assert all(torch.equal(x, y) for x, y in zip(want, got))
    assert len(calls) == 2, "the second run of each shape is bound"


def test_export_takes_the_preset_a_params_file_names_unless_one_is_given(tmp_path):
    """A hand-written params file that says only `preset: cpu-lite` exports cpu-lite's models (SAM2-tiny at 512),
    not the command's default; --preset on the command line still wins."""
    from types import SimpleNamespace

    from textregion_ros.backends.export import config_from
    f = tmp_path / "my.yaml"
    f.write_text("/**:\n  ros__parameters:\n    preset: cpu-lite\n    points_per_side: 4\n")
    cfg = config_from(SimpleNamespace(preset=None, params=str(f), overrides=[]))
    assert (cfg.sam2_model, cfg.sam2_input_size, cfg.points_per_side) == ("tiny", 512, 4)
    cfg = config_from(SimpleNamespace(preset="paper", params=str(f), overrides=["sam2_input_size=768"]))
    assert (cfg.sam2_model, cfg.sam2_input_size) == ("large", 768)
    cfg = config_from(SimpleNamespace(preset=None, params=None, overrides=[]))
    assert cfg.sam2_model == "tiny" and cfg.sam2_input_size == 512  # realtime, the node's default
