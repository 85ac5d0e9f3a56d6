"""Demo: run the real textregion node on a camera replay and save what it publishes.

    python -m textregion_ros.ros.demo [--source generated|VIDEO|IMAGE_DIR|BAG_DIR] [--query "red mug"]
                                  [--frames 10] [--out demo_out] [--preset cpu-lite]

The node runs as its own process (as `ros2 launch` would start it); this
process plays the camera (image, depth when the source has it, camera_info),
publishes the query, and writes every overlay frame plus summary.json. Frames
are played in lockstep with the node's output so none is skipped.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import cv2
import numpy as np

BANNER = "=" * 78


def default_params_file() -> str:
    try:
        from ament_index_python.packages import get_package_share_directory
        path = os.path.join(get_package_share_directory("textregion_ros"), "config", "perceive.yaml")
        if os.path.isfile(path):
            return path
    except Exception:  # not installed with colcon: use the source tree's copy
        pass
    return str(Path(__file__).resolve().parent.parent / "config" / "perceive.yaml")


def frames_from(source: str, count: int) -> Iterator[Tuple[np.ndarray, Optional[np.ndarray], np.ndarray]]:
    """-> (rgb uint8, depth metres or None, K) per frame."""
    from ..eval.scene import make_scene

    if source == "generated":
        for i in range(count):
            s = make_scene(seed=i, shift=6 * i)
            yield s.rgb, s.depth_m, s.K
        return
    if os.path.isdir(source) and os.path.isfile(os.path.join(source, "metadata.yaml")):
        yield from frames_from_bag(source, count)
        return
    if os.path.isdir(source):
        files = sorted(f for ext in ("png", "jpg", "jpeg") for f in glob.glob(os.path.join(source, f"*.{ext}")))
        if not files:
            raise SystemExit(f"no .png/.jpg images in {source}")
        for f in files[:count]:
            rgb = cv2.cvtColor(cv2.imread(f, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            yield rgb, None, default_K(rgb)
        return
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise SystemExit(f"cannot open video {source}")
    for _ in range(count):
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        yield rgb, None, default_K(rgb)


def frames_from_bag(path: str, count: int):
    try:
        import rosbag2_py
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import Image
    except ImportError:
        raise SystemExit("reading a rosbag2 needs rosbag2_py (a ROS 2 install); it is not on PyPI")
    from .convert import image_to_rgb8
    reader = rosbag2_py.SequentialReader()
    reader.open(rosbag2_py.StorageOptions(uri=path), rosbag2_py.ConverterOptions("", ""))
    types = {t.name: t.type for t in reader.get_all_topics_and_types()}
    n = 0
    while reader.has_next() and n < count:
        topic, data, _ = reader.read_next()
        if types.get(topic) == "sensor_msgs/msg/Image":
            rgb = image_to_rgb8(deserialize_message(data, Image))
            n += 1
            yield rgb, None, default_K(rgb)


def default_K(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return np.array([[0.8 * w, 0, w / 2], [0, 0.8 * w, h / 2], [0, 0, 1]], np.float64)


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def weights_cached(preset: str) -> Tuple[bool, str]:
    """Whether the preset's pretrained weights are in the local cache: their files looked up offline (what the
    node does first on configure), no model built. Building the pipeline here would load the weights twice."""
    import huggingface_hub.constants as hf

    from ..config import preset as preset_config
    from ..encoders.weights import WeightsUnavailableError
    from ..files.hub import fetch_weights

    was = hf.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
    hf.HF_HUB_OFFLINE, os.environ["HF_HUB_OFFLINE"] = True, "1"  # the cache only: read at each lookup
    try:
        fetch_weights(preset_config(preset, vocabulary=("x",), background=()))
        return True, ""
    except WeightsUnavailableError as exc:
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        hf.HF_HUB_OFFLINE = was[0]
        if was[1] is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = was[1]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="generated")
    ap.add_argument("--query", default="red mug")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--out", default="demo_out")
    ap.add_argument("--preset", default=None, help="default: realtime with CUDA, else cpu-lite")
    ap.add_argument("--params-file", default=default_params_file())
    ap.add_argument("--random-weights", action="store_true", help="use random weights (outputs meaningless)")
    ap.add_argument("--timeout", type=float, default=120.0, help="s to wait for each frame's output")
    return ap.parse_args(argv)


def use_random_weights(preset: str, asked: bool) -> bool:
    """Random weights when asked, or (with a banner) when the weights are neither cached nor reachable."""
    if asked:
        return True
    cached, why = weights_cached(preset)
    if cached or hub_reachable():
        return False
    print(f"\n{BANNER}\nPRETRAINED WEIGHTS ARE NOT AVAILABLE: not in the local cache and the model hub is "
          f"unreachable.\n  ({why})\nThe demo continues with random_weights:=true. EVERY LABEL, SCORE, "
          f"GROUNDING AND 3D POINT BELOW IS MEANINGLESS;\nit shows that the node runs, not what it "
          f"sees. See docs/parameters.md 'Model weights' to get them.\n{BANNER}\n", flush=True)
    return True


def node_command(params_file: str, preset: str, random_weights: bool) -> List[str]:
    cmd = [sys.executable, "-m", "textregion_ros.ros.node", "--ros-args", "--params-file", params_file,
           "-r", "__ns:=/textregion", "-p", f"preset:={preset}", "-p", f"random_weights:={str(random_weights).lower()}",
           "-p", "max_age:=0.0"]
    if random_weights:  # random SAM2 heads predict low IoU; let masks through so the outputs have regions
        cmd += ["-p", "pred_iou_thresh:=0.0", "-p", "stability_score_thresh:=0.0"]
    return cmd


class Player:
    """The demo's camera: publishes frames and the query to the node, and collects its outputs by stamp."""
    TOPICS = ("overlay", "grounded", "regions")

    def __init__(self):
        import rclpy
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import String

        import textregion_ros.msg as trmsg

        rclpy.init()
        self.node = n = rclpy.create_node("textregion_demo_player", namespace="textregion")
        self.got = {}
        for topic, cls in zip(self.TOPICS, (Image, trmsg.GroundedRegion, trmsg.RegionArray)):
            n.create_subscription(cls, topic, lambda m, t=topic: self.got.setdefault((t, stamp_key(m)), m), 10)
        self.img = n.create_publisher(Image, "image", qos_profile_sensor_data)
        self.depth = n.create_publisher(Image, "depth", qos_profile_sensor_data)
        self.info = n.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.query = n.create_publisher(String, "query", 10)

    def send(self, rgb, depth, K):
        """Publish one frame -> (its stamp key, the image message)."""
        from std_msgs.msg import Header

        from .convert import camera_frame

        stamp = self.node.get_clock().now().to_msg()
        img, d, info = camera_frame(rgb, K, Header(stamp=stamp, frame_id="camera_color_optical_frame"),
                                    None if depth is None else np.nan_to_num(depth, nan=0.0).astype(np.float32))
        self.info.publish(info)
        if d is not None:
            self.depth.publish(d)
        self.img.publish(img)
        return (stamp.sec, stamp.nanosec), img

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.try_shutdown()


def frame_entry(i: int, got, key, out: Path, latency_s: float) -> dict:
    """Save the frame's overlay and summarise its grounding."""
    ov, g, regions = got[("overlay", key)], got[("grounded", key)], got.get(("regions", key))
    overlay = np.frombuffer(bytes(ov.data), np.uint8).reshape(ov.height, ov.width, 3)
    cv2.imwrite(str(out / f"overlay_{i:04d}.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    return {"frame": i, "latency_s": round(latency_s, 3), "found": g.found,
            "score": round(g.score, 4), "cosine": round(g.cosine, 4), "margin": round(g.margin, 4),
            "region_label": g.region.label, "bbox": [g.region.bbox.x_offset, g.region.bbox.y_offset,
                                                     g.region.bbox.width, g.region.bbox.height],
            "point_m": [g.region.centroid.x, g.region.centroid.y, g.region.centroid.z],
            "regions": len(regions.regions) if regions else None}


def play(args, player: Player, node_proc, out: Path, summary: dict, random_weights: bool) -> int:
    from std_msgs.msg import String

    if not wait_for(lambda: player.img.get_subscription_count() > 0 and player.query.get_subscription_count() > 0,
                    player.node, node_proc, 600.0):
        print("the node did not come up (see its log above)", file=sys.stderr)
        return node_proc.poll() or 1
    player.query.publish(String(data=args.query))
    for i, (rgb, depth, K) in enumerate(frames_from(args.source, args.frames)):
        t0 = time.monotonic()
        key, img = player.send(rgb, depth, K)
        # Topics arrive in no set order across DDS writers: wait for every one the summary reads.
        if not wait_for(lambda: all((t, key) in player.got for t in Player.TOPICS), player.node, node_proc,
                        args.timeout, republish=lambda: player.img.publish(img)):
            print(f"frame {i}: no output within {args.timeout}s", file=sys.stderr)
            return 1
        entry = frame_entry(i, player.got, key, out, time.monotonic() - t0)
        summary["frames"].append(entry)
        print(f"frame {i}: {entry['regions']} regions, '{args.query}' found={entry['found']} "
              f"score={entry['score']:.3f} ({entry['latency_s']:.2f}s)"
              f"{'  [random weights: meaningless]' if random_weights else ''}", flush=True)
    return 0


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    preset = args.preset or ("realtime" if torch.cuda.is_available() else "cpu-lite")
    random_weights = use_random_weights(preset, args.random_weights)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    node_cmd = node_command(args.params_file, preset, random_weights)
    print("starting node:", " ".join(node_cmd), flush=True)
    node_proc = subprocess.Popen(node_cmd)
    player = Player()
    summary = {"query": args.query, "preset": preset, "source": args.source, "random_weights": random_weights,
               "note": "RANDOM WEIGHTS: outputs are meaningless" if random_weights else "", "frames": []}
    try:
        rc = play(args, player, node_proc, out, summary, random_weights)
    finally:
        (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=True))
        node_proc.terminate()
        try:
            node_proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node_proc.kill()
        player.close()
    print(f"wrote {len(summary['frames'])} overlay frames and summary.json to {out}/")
    if random_weights:
        print(f"{BANNER}\nREMINDER: random weights were used; the outputs are meaningless.\n{BANNER}")
    return rc


def stamp_key(msg) -> Tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def wait_for(cond, node, proc, timeout: float, republish=None) -> bool:
    import rclpy
    end = time.monotonic() + timeout
    next_pub = time.monotonic() + 5.0
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
        if cond():
            return True
        if proc.poll() is not None:
            return False
        if republish is not None and time.monotonic() > next_pub:
            republish()  # best-effort camera QoS may lose a frame; the node processes the newest
            next_pub = time.monotonic() + 5.0
    return False


if __name__ == "__main__":
    sys.exit(main())
