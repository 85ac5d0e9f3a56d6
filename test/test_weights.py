"""Pretrained weights through the real loading path, from a local Hugging Face cache, offline.

Files are laid out exactly as huggingface_hub caches them, under the real repo ids and file names,
so open_clip's and sam2's own download code finds them with HF_HUB_OFFLINE=1. The weights are
random (none can be downloaded here); what is tested is the path and the tag's metadata.
"""
import os
import subprocess
import sys

import torch

from textregion_ros.encoders import create_encoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def hf_cache_file(hub: str, repo_id: str, filename: str) -> str:
    repo = os.path.join(hub, "models--" + repo_id.replace("/", "--"))
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(SNAPSHOT)
    snap = os.path.join(repo, "snapshots", SNAPSHOT)
    os.makedirs(snap, exist_ok=True)
    return os.path.join(snap, filename)


def run_offline(hub: str, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": hub, "PYTHONPATH": ROOT + os.pathsep +
           os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_openai_tag_loads_from_the_hub_cache_with_quickgelu(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(3)
    enc = create_encoder("ViT-B-16", weights="openai", random_weights=True)  # the tag's architecture
    act = enc.model.visual.transformer.resblocks[0].mlp.gelu
    assert type(act).__name__ == "QuickGELU", "random weights built for the openai tag use its activation"
    path = hf_cache_file(str(tmp_path), "timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors")
    save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()}, path)
    probe = float(enc.model.visual.proj[0, 0])
    code = """
import logging, torch
from textregion_ros.encoders import create_encoder
enc = create_encoder("ViT-B-16", weights="openai")
m = enc.model
print("ACT", type(m.visual.transformer.resblocks[-1].mlp.gelu).__name__)
print("PROBE", float(m.visual.proj[0, 0]))
print("META", enc.meta.quick_gelu, enc.interpolation, tuple(round(x, 4) for x in enc.mean.flatten().tolist()))
"""
    out = run_offline(str(tmp_path), code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ACT QuickGELU" in out.stdout
    assert f"PROBE {probe}" in out.stdout, "the cached file's weights were loaded"
    assert "META True bicubic (0.4815, 0.4578, 0.4082)" in out.stdout
    assert "QuickGELU mismatch" not in out.stderr


# The default id, and a fine-tune under another id (the README allows any HF id; sam2's own table does not
# know it): both are read from the cache under sam2's file name for the size. One process loads both.
SAM2_IDS = (("facebook/sam2.1-hiera-tiny", ""), ("myorg/sam2.1-hiera-tiny-finetuned", "myorg/sam2.1-hiera-tiny-finetuned"))


def test_sam2_hub_ids_load_from_the_hub_cache(tmp_path, sam2_tiny):
    name, p = next(iter(sam2_tiny.named_parameters()))
    code = "from textregion_ros.masks.sam2_build import build_sam2_model\n"
    for k, (repo, weights) in enumerate(SAM2_IDS):
        state = {n: v + k for n, v in sam2_tiny.state_dict().items()}  # each file its own values
        torch.save({"model": state}, hf_cache_file(str(tmp_path), repo, "sam2.1_hiera_tiny.pt"))
        code += f"print('PROBE', {k}, float(dict(build_sam2_model('tiny', {weights!r}).named_parameters())" \
                f"[{name!r}].flatten()[0]))\n"
    out = run_offline(str(tmp_path), code)
    assert out.returncode == 0, out.stderr[-2000:]
    for k in range(len(SAM2_IDS)):
        assert f"PROBE {k} {float(p.detach().flatten()[0] + k)}" in out.stdout, (k, out.stdout)


def test_missing_weights_fail_fast_each_is_named_and_the_demo_tells_cached_from_missing(tmp_path):
    """One process: a missing tag fails fast offline; a pipeline missing two sources names both in one
    error; the demo's check (ros/demo.py) finds both missing, then, with the files in the cache, none."""
    code = f"""
import time
from textregion_ros.config import preset
from textregion_ros.encoders import create_encoder, WeightsUnavailableError
from textregion_ros.pipeline import Pipeline
from textregion_ros.ros.demo import weights_cached
t = time.monotonic()
try:
    create_encoder("ViT-B-16", weights="openai")
except WeightsUnavailableError as e:
    print("FAST", time.monotonic() - t)
try:
    Pipeline(preset("cpu-lite", sam2_weights="myorg/sam2.1-hiera-tiny-finetuned"))
except WeightsUnavailableError as e:
    print("ERR", e)
print("DEMO", weights_cached("cpu-lite"))
for repo, file in (("timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors"),
                   ("facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt")):
    open(__import__("test_weights").hf_cache_file({str(tmp_path)!r}, repo, file), "wb").close()
print("CACHED", weights_cached("cpu-lite"))
"""
    out = run_offline(str(tmp_path), "import sys; sys.path.insert(0, " + repr(os.path.join(ROOT, "test")) + ")\n" + code)
    assert "FAST" in out.stdout, out.stderr[-2000:]
    assert float(out.stdout.split("FAST")[1].split()[0]) < 10
    assert "ERR 2 weight sources are missing" in out.stdout, (out.stdout + out.stderr)[-2000:]
    assert "(1) image-text encoder: could not load weights 'openai'" in out.stdout
    assert "(2) SAM2: could not obtain SAM2 weights myorg/sam2.1-hiera-tiny-finetuned" in out.stdout
    assert "DEMO (False, 'WeightsUnavailableError: 2 weight sources are missing:')" in out.stdout, out.stdout
    assert "CACHED (True, '')" in out.stdout, (out.stdout + out.stderr)[-2000:]
