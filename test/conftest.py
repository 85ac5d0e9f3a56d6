"""Shared fixtures: random-weight models built once per session, and test markers."""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
# Model hubs are unreachable here; fail fast instead of retrying downloads.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# A unique domain per test run keeps parallel runs on one machine apart.
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
# Text embeddings persist on disk (encoders/text.py). A run keeps its own cache, shared with the nodes it starts:
# nothing is read from another run or the user's ~/.cache, and the nodes' random weights (one seed, loading.py)
# embed the default vocabulary once per run instead of at every configure.
if "TEXTREGION_CACHE" not in os.environ:
    os.environ["TEXTREGION_CACHE"] = tempfile.mkdtemp(prefix="textregion-test-text-")
    atexit.register(shutil.rmtree, os.environ["TEXTREGION_CACHE"], True)
# Loopback only, with a shared-memory segment large enough for camera frames (see the XML).
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(ROOT, "config", "fastdds_localhost.xml"))


def pytest_collection_modifyitems(config, items):
    cuda = torch.cuda.is_available()
    try:
        import launch_ros  # noqa: F401
        has_launch = True
    except ImportError:
        has_launch = False
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs CUDA: no GPU on this machine"))
        if "launch" in item.keywords and not has_launch:
            item.add_marker(pytest.mark.skip(
                reason="needs the ROS 2 launch/launch_ros packages, which are not on PyPI; "
                       "run on a ROS 2 install (apt ros-<distro>-launch-ros)"))


def random_encoder(name: str):
    from textregion_ros.encoders import create_encoder
    torch.manual_seed(0)
    return create_encoder(name, random_weights=True)


@pytest.fixture(scope="session")
def clip_encoder():
    return random_encoder("ViT-B-16")


@pytest.fixture(scope="session")
def sam2_tiny():
    from textregion_ros.masks.sam2_build import build_sam2_model
    torch.manual_seed(0)
    return build_sam2_model("tiny", random_weights=True)


@pytest.fixture(scope="session")
def scene():
    from textregion_ros.eval.scene import make_scene
    return make_scene()


@pytest.fixture(scope="session")
def siglip2_encoder():
    return random_encoder("ViT-B-16-SigLIP2")


@pytest.fixture(scope="session")
def pe_encoder():
    return random_encoder("PE-Core-B-16")
