"""Packaging: package.xml, the colcon install, and a pip-installed core side by side with it."""
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import yaml

from ros_harness import ROOT
from textregion_ros.config import PipelineConfig
from textregion_ros.ros.settings import NodeSettings


def test_package_xml_is_format_3_with_rosdep_keys():
    root = ET.parse(os.path.join(ROOT, "package.xml")).getroot()
    assert root.get("format") == "3" and root.findtext("name") == "textregion_ros"
    email = root.find("maintainer").get("email")
    assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", email)
    deps = {e.text for e in root if e.tag.endswith("depend")}
    for key in ("rclpy", "sensor_msgs", "std_msgs", "geometry_msgs", "visualization_msgs", "diagnostic_msgs",
                "rosidl_default_generators", "rosidl_default_runtime", "launch_ros", "python3-numpy",
                "python3-opencv", "python3-torch", "python3-torchvision"):
        assert key in deps, key
    assert root.findtext("member_of_group") == "rosidl_interface_packages"


def test_yaml_names_every_knob_and_pins_no_placeholder():
    """Each knob appears, set or as a commented example; what is set is a real value, never a
    placeholder, and no pipeline knob is pinned against the preset except random_weights."""
    path = os.path.join(ROOT, "config", "perceive.yaml")
    with open(path) as f:
        text = f.read()
    params = yaml.safe_load(text)["/**"]["ros__parameters"]
    named = set(re.findall(r"^\s*#?\s*([a-z_0-9]+):", text, flags=re.M))
    knobs = set(PipelineConfig.__dataclass_fields__) | set(NodeSettings.__dataclass_fields__) | {"preset"}
    assert knobs <= named, knobs - named
    assert set(params) <= knobs
    for name, value in params.items():
        assert value not in ("", -1, -1.0, [""], [-1]), (name, value)
    pinned = set(params) & set(PipelineConfig.__dataclass_fields__)
    assert pinned == {"random_weights"}, pinned


def test_colcon_install_has_messages_and_modules_together():
    site = os.path.join(ROOT, "install", "textregion_ros", "lib", "python3.11", "site-packages", "textregion_ros")
    for rel in ("msg/__init__.py", "srv/__init__.py", "pipeline.py", "ros/node.py"):
        assert os.path.isfile(os.path.join(site, rel)), rel
    share = os.path.join(ROOT, "install", "textregion_ros", "share", "textregion_ros")
    for rel in ("launch/perceive.launch.py", "config/perceive.yaml", "config/perceive.rviz"):
        assert os.path.isfile(os.path.join(share, rel)), rel
    assert os.access(os.path.join(ROOT, "install", "textregion_ros", "lib", "textregion_ros", "textregion_node"),
                     os.X_OK)


def test_pip_installed_core_does_not_hide_generated_messages(tmp_path):
    """pip install the core, put it first on sys.path, and the colcon-built msgs still import."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), ROOT], check=True, capture_output=True, timeout=300)
    assert not (target / "textregion_ros" / "msg").exists()
    install = os.path.join(ROOT, "install", "textregion_ros", "lib", "python3.11", "site-packages")
    code = ("import textregion_ros.pipeline as p, textregion_ros\n"
            "from textregion_ros.msg import RegionArray\nfrom textregion_ros.srv import Ground\n"
            "print(p.__file__); print(RegionArray.__module__)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), install, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    pipeline_file, msg_module = out.stdout.split()
    assert pipeline_file.startswith(str(target))
    assert msg_module.startswith("textregion_ros.msg")
