"""The launch file. Without the ROS 2 launch packages (not on PyPI) it is checked as source: it
compiles, every argument has a description, and the RViz config it renders follows the namespace
and frame. Running it (exit codes, RViz, argument overrides) needs a ROS install: those tests
carry the `launch` marker and skip here with the reason printed."""
import ast
import os
import subprocess
import sys

import pytest
import yaml

from ros_harness import ROOT
from textregion_ros.ros.rviz_config import render, write_rendered

LAUNCH = os.path.join(ROOT, "launch", "perceive.launch.py")


def launch_args():
    from textregion_ros.ros.launch_args import ARGS
    return ARGS


def test_launch_file_compiles_and_every_argument_is_described():
    compile(open(LAUNCH).read(), "perceive.launch.py", "exec")
    args = {name: (default, desc) for name, default, desc in launch_args()}
    assert {"namespace", "params_file", "image", "depth", "camera_info", "compressed", "use_sim_time", "rviz",
            "fixed_frame"} <= set(args)
    assert all(len(desc) > 10 for _, desc in args.values())
    # Left unset, these must not override the params file.
    assert all(args[n][0] == "" for n in ("compressed", "use_sim_time", "preset", "device", "random_weights",
                                           "memory", "autostart"))
    src = open(LAUNCH).read()
    assert "unknown_arguments(context.launch_configurations" in src  # a misspelled argument is named
    assert "OnProcessExit" in src and "on_exit=Shutdown()" in src and 'executable="textregion_node"' in src
    assert 'executable="textregion_memory"' in src and "respawn=True" in src  # memory:=true: its own node


def test_rviz_config_follows_the_namespace_and_the_camera_frame():
    with open(os.path.join(ROOT, "config", "perceive.rviz")) as f:
        template = f.read()
    cfg = yaml.safe_load(render(template, "robot1", "cam_optical"))
    topics = [d["Topic"]["Value"] for d in cfg["Visualization Manager"]["Displays"] if "Topic" in d]
    assert topics and all(t.startswith("/robot1/") for t in topics), topics
    assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] == "cam_optical"
    view = cfg["Visualization Manager"]["Views"]["Current"]
    assert view["Class"] == "rviz_default_plugins/FPS" and abs(view["Pitch"] + 1.57) < 0.01
    root = yaml.safe_load(render(template, "/", "f"))
    default = yaml.safe_load(template)["Visualization Manager"]["Displays"]
    expected = ["/" + d["Topic"]["Value"][len("/textregion/"):] for d in default if "Topic" in d]
    assert [d["Topic"]["Value"] for d in root["Visualization Manager"]["Displays"] if "Topic" in d] == expected


@pytest.mark.launch
def test_launch_with_missing_weights_exits_non_zero_quickly():
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    p = subprocess.run(["ros2", "launch", "textregion_ros", "perceive.launch.py"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode != 0
    assert (p.stdout + p.stderr).count("cannot start") == 1


@pytest.mark.launch
def test_launch_arguments_show_descriptions():
    p = subprocess.run(["ros2", "launch", "textregion_ros", "perceive.launch.py", "--show-args"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "no description given" not in p.stdout
    assert sys.executable


def test_rendered_rviz_config_is_reused_not_left_behind_per_launch(tmp_path):
    template = os.path.join(ROOT, "config", "perceive.rviz")
    paths = {write_rendered(template, "robot1", "base_link", str(tmp_path)) for _ in range(3)}
    assert len(paths) == 1 and sorted(os.listdir(tmp_path)) == [os.path.basename(paths.pop())]
    other = write_rendered(template, "robot2", "base_link", str(tmp_path))
    assert "/robot2/" in open(other).read() and len(os.listdir(tmp_path)) == 2


def test_a_misspelled_or_unknown_launch_argument_is_named_with_the_closest_one():
    from textregion_ros.ros.launch_args import BOOL_ARGS, NAMES, unknown_arguments
    assert "memory" in NAMES and "memory" in BOOL_ARGS  # memory:=true is a launch argument
    lines = unknown_arguments(["namespace", "memroy", "rvis", "sam2_input_size"])
    assert len(lines) == 3, lines
    assert "'memroy'" in lines[0] and "did you mean 'memory'" in lines[0]
    assert "'rvis'" in lines[1] and "did you mean 'rviz'" in lines[1]
    assert "'sam2_input_size'" in lines[2] and "params_file" in lines[2]  # a knob: where it goes instead
    assert unknown_arguments(NAMES) == []


def test_rviz_config_shows_each_cameras_displays_with_several_cameras():
    with open(os.path.join(ROOT, "config", "perceive.rviz")) as f:
        template = f.read()
    one = yaml.safe_load(render(template, "textregion", "f"))["Visualization Manager"]["Displays"]
    two = yaml.safe_load(render(template, "textregion", "f", ["head", "wrist"]))["Visualization Manager"]["Displays"]
    topics = [d["Topic"]["Value"] for d in two if "Topic" in d]
    for d in one:
        if "Topic" not in d:
            continue
        rest = d["Topic"]["Value"][len("/textregion/"):]
        if rest.startswith("memory/"):  # the memory is the node's, shared by the cameras
            assert topics.count(d["Topic"]["Value"]) == 1
        else:
            assert f"/textregion/head/{rest}" in topics and f"/textregion/wrist/{rest}" in topics, rest
            assert d["Topic"]["Value"] not in topics  # nothing points at a topic a two-camera node lacks
    names = [d["Name"] for d in two]
    assert "TextRegion overlay (head)" in names and len(set(names)) == len(names)


@pytest.mark.launch
def test_memory_true_brings_up_both_nodes_and_ctrl_c_stops_them_with_status_0():
    """memory:=true: the perception node and textregion_memory, both configured and activated by autostart;
    one SIGINT (Ctrl-C) ends the launch with status 0."""
    import signal
    import time

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    p = subprocess.Popen(["ros2", "launch", "textregion_ros", "perceive.launch.py", "memory:=true",
                          "random_weights:=true", "preset:=cpu-lite", "namespace:=launchmem"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, seen = time.monotonic() + 240, ""
        while time.monotonic() < deadline:
            states = [subprocess.run(["ros2", "lifecycle", "get", f"/launchmem/{n}"], capture_output=True, text=True,
                                     timeout=30).stdout for n in ("textregion", "textregion_memory")]
            seen = " | ".join(states)
            if all(s.startswith("active") for s in states):
                break
            time.sleep(2)
        assert all(s.startswith("active") for s in seen.split(" | ")), seen
        p.send_signal(signal.SIGINT)
        assert p.wait(60) == 0
    finally:
        if p.poll() is None:
            p.kill()
