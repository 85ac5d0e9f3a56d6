"""Startup: missing weights mean a clear error and a non-zero exit, never random weights."""
import os
import subprocess
import sys
import time

from ros_harness import ROOT, YAML


def test_missing_weights_exit_non_zero_with_a_clear_error():
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, "-m", "textregion_ros.ros.node", "--ros-args", "--params-file", YAML,
                        "-p", "preset:=cpu-lite"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    err = p.stderr
    assert "cannot start" in err and "could not load weights 'openai'" in err and "ViT-B-16" in err
    assert "facebook/sam2.1-hiera-tiny" in err, "SAM2's missing weights are named in the same run"
    assert "RANDOM WEIGHTS" not in err and "ready" not in err


def test_bad_parameters_exit_non_zero():
    p = subprocess.run([sys.executable, "-m", "textregion_ros.ros.node", "--ros-args", "--params-file", YAML,
                        "-p", "preset:=warp-speed"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "unknown preset" in p.stderr


def test_without_offline_mode_missing_weights_still_fail_fast_with_one_message():
    """No HF_HUB_OFFLINE: one quick probe finds no hub, so no minute of retries before the error."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "textregion_ros.ros.node", "--ros-args", "--params-file", YAML,
                        "-p", "preset:=cpu-lite"], env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - t0
    assert p.returncode == 2, p.stderr[-2000:]
    assert p.stderr.count("cannot start") == 1 and "local cache only" in p.stderr
    assert elapsed < 45, elapsed
