"""The launch file, where the ROS 2 launch packages exist (not on PyPI)."""
import importlib.util
import os

import pytest

from ros_harness import ROOT


@pytest.mark.launch
def test_launch_description_declares_the_documented_arguments():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location("perceive", os.path.join(ROOT, "launch", "perceive.launch.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    assert isinstance(ld, LaunchDescription)
    names = {a.name for a in ld.entities if isinstance(a, DeclareLaunchArgument)}
    assert {"namespace", "params_file", "image", "depth", "camera_info", "compressed", "use_sim_time",
            "rviz"} <= names


def test_launch_file_is_valid_python_naming_installed_resources():
    src = open(os.path.join(ROOT, "launch", "perceive.launch.py")).read()
    compile(src, "perceive.launch.py", "exec")
    for needed in ('"perceive.yaml"', '"perceive.rviz"', 'executable="textregion_node"', 'name="textregion"'):
        assert needed in src
