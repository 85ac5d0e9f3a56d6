"""The README's main job, on 2 frames: the real node on the generated camera replay."""
import json
import os
import subprocess
import sys


def test_demo_runs_two_frames_and_labels_random_weights(tmp_path):
    out = tmp_path / "demo"
    p = subprocess.run([sys.executable, "-m", "textregion_ros.ros.demo", "--frames", "2", "--out", str(out)],
                       capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["overlay_0000.png", "overlay_0001.png", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["frames"]) == 2 and summary["query"] == "red mug"
    # No weights can be had here: the demo must say so and mark every output meaningless.
    assert summary["random_weights"] is True and "meaningless" in summary["note"]
    assert "PRETRAINED WEIGHTS ARE NOT AVAILABLE" in p.stdout
    assert all(f["regions"] >= 1 for f in summary["frames"])
