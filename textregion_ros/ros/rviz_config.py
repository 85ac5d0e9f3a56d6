"""The RViz configuration for a namespace and a camera frame (no launch or RViz imports).

config/perceive.rviz is written for the default namespace ``/textregion`` and the frame
``camera_color_optical_frame``; the launch file renders it for the namespace and frame the user
chose, so ``namespace:=robot1 rviz:=true`` shows robot1's topics.

The 3D view looks from behind the camera along its optical axis (+z), with the image's up (-y)
up on screen: RViz's views assume z-up, which tips an optical-frame scene over otherwise.
"""
from __future__ import annotations

import hashlib
import os
import tempfile

import yaml

DEFAULT_NAMESPACE = "/textregion"
DEFAULT_FRAME = "camera_color_optical_frame"
OPTICAL_VIEW = {
    "Class": "rviz_default_plugins/FPS",
    "Name": "Behind the camera",
    "Position": {"X": 0.0, "Y": 0.0, "Z": -0.6},
    "Yaw": 1.5708,   # face +y, then
    "Pitch": -1.5697,  # pitch up to face +z: screen up is then -y (the image's up)
    "Target Frame": "<Fixed Frame>",
}


SHARED = ("memory/",)  # the node's own topics, one for every camera; the rest are each camera's


def render(template: str, namespace: str, fixed_frame: str, cameras=()) -> str:
    """With several cameras, each camera's display is repeated per camera, on ``<namespace>/<camera>/...`` and
    named after it; the memory's displays stay one."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    cfg = yaml.safe_load(template)
    displays = []
    for display in cfg["Visualization Manager"]["Displays"]:
        topic = display.get("Topic")
        if not (topic and topic.get("Value", "").startswith(DEFAULT_NAMESPACE + "/")):
            displays.append(display)
            continue
        rest = topic["Value"][len(DEFAULT_NAMESPACE) + 1:]
        if not cameras or rest.startswith(SHARED):
            topic["Value"] = f"{ns}/{rest}"
            displays.append(display)
            continue
        for cam in cameras:
            copy = yaml.safe_load(yaml.safe_dump(display))
            copy["Name"], copy["Topic"]["Value"] = f"{display['Name']} ({cam})", f"{ns}/{cam}/{rest}"
            displays.append(copy)
    cfg["Visualization Manager"]["Displays"] = displays
    cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] = fixed_frame
    cfg["Visualization Manager"]["Views"]["Current"] = dict(OPTICAL_VIEW)
    return yaml.safe_dump(cfg, sort_keys=False)


def write_rendered(template_path: str, namespace: str, fixed_frame: str, directory: str = "", cameras=()) -> str:
    """The rendered config in ``$ROS_HOME/textregion_ros`` (default ~/.ros), named by its content: every
    launch with the same namespace and frame reuses one file instead of leaving a new one in /tmp."""
    with open(template_path) as f:
        text = render(f.read(), namespace, fixed_frame, cameras)
    directory = directory or os.path.join(os.environ.get("ROS_HOME") or os.path.expanduser("~/.ros"),
                                          "textregion_ros")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"perceive_{hashlib.sha1(text.encode()).hexdigest()[:12]}.rviz")
    fd, tmp = tempfile.mkstemp(prefix=".perceive_", suffix=".rviz", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)  # atomic: an RViz starting from another launch never reads half a file
    return path
