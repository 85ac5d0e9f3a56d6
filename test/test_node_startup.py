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


def test_the_memory_node_runs_numpys_blas_on_one_thread(monkeypatch):
    """textregion_memory asks run() for one BLAS thread, and run's limit_blas really sets numpy's pool (a
    process of its own: the limit holds for the whole process)."""
    import textregion_ros.ros.run as run_mod
    from textregion_ros.ros import memory_node

    asked = {}
    monkeypatch.setattr(run_mod, "run", lambda cls, args=None, **kw: asked.update(cls=cls, **kw) or 0)
    assert memory_node.main([]) == 0
    assert asked == {"cls": memory_node.MemoryNode, "blas_threads": 1}
    code = ("import numpy; from threadpoolctl import threadpool_info as info; from textregion_ros.ros.run import "
            "limit_blas; before = [p['num_threads'] for p in info() if p['user_api'] == 'blas']; "
            "assert limit_blas(1) is None; print(before, [p['num_threads'] for p in info() if p['user_api'] == 'blas'])")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2")  # at least two to begin with, whatever this machine has
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[2] [1]", p.stdout
