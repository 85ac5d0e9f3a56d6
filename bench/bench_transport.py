"""What one image costs between two processes: rclpy's copies and Fast DDS's transports, measured.

    python bench/bench_transport.py [--count 150] [--fps 30]

For camera-sized sensor_msgs/Image samples (VGA rgb8, VGA 32FC1 depth, 720p rgb8) it measures:

* in one process, the Python side of rclpy: building the message from numpy (``array_to_image``, one
  copy into an ``array.array``), ``serialize_message`` (rclpy's Python-to-C conversion plus CDR
  serialization, what ``publish`` does before the transport), and reading a received message back
  as numpy (``image_to_array``: a view of the received buffer where rows are tight, no copy);
* between two processes, at --fps with the node's sensor QoS (best effort), for three Fast DDS
  setups: the profile this package ships (``config/fastdds_localhost.xml``: shared memory with a
  64 MB segment, UDP on loopback), UDP on loopback only, and Fast DDS's built-in defaults (no
  profile): the share of samples delivered, stamp-to-callback latency, the publisher's CPU in its
  ``publish`` call, and the subscriber process's CPU per delivered sample (its idle spinning included,
  so that figure is large where few samples arrive).

Fast DDS's data-sharing delivery (its "zero copy") needs bounded plain types and loaned samples,
which sensor_msgs/Image (unbounded sequences) and rclpy do not give; the figures show what remains.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SUBSCRIBER = r"""
import json, sys, time, rclpy, psutil
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from textregion_ros.ros.convert import image_to_array
rclpy.init(); n = rclpy.create_node("transport_sub")
lat, nbytes = [], []
def on(m):
    lat.append(time.time_ns() - (m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec))
    nbytes.append(image_to_array(m).nbytes)
n.create_subscription(Image, "bench_image", on, qos_profile_sensor_data)
proc = psutil.Process()
print("ready", flush=True)
cpu0 = None
end = None
while end is None or time.monotonic() < end:
    rclpy.spin_once(n, timeout_sec=0.05)
    if cpu0 is None and lat:
        t = proc.cpu_times(); cpu0 = t.user + t.system; first = len(lat)
    if end is None and sys.stdin in __import__("select").select([sys.stdin], [], [], 0)[0]:
        sys.stdin.readline(); end = time.monotonic() + 1.0
t = proc.cpu_times()
print(json.dumps({"received": len(lat), "lat_ns": lat, "bytes": nbytes[:1],
                  "cpu_s": (t.user + t.system - cpu0) if cpu0 is not None else None,
                  "cpu_samples": len(lat) - first if cpu0 is not None else 0}))
"""

UDP_ONLY = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com"><profiles>
  <transport_descriptors><transport_descriptor><transport_id>udp_loopback</transport_id><type>UDPv4</type>
    <interfaceWhiteList><address>127.0.0.1</address></interfaceWhiteList></transport_descriptor></transport_descriptors>
  <participant profile_name="udp_only" is_default_profile="true"><rtps>
    <useBuiltinTransports>false</useBuiltinTransports>
    <userTransports><transport_id>udp_loopback</transport_id></userTransports>
    <builtin><initialPeersList><locator><udpv4><address>127.0.0.1</address></udpv4></locator></initialPeersList></builtin>
  </rtps></participant></profiles></dds>
"""

IMAGES = {"vga_rgb8": ((480, 640, 3), np.uint8, "rgb8"), "vga_depth_32FC1": ((480, 640), np.float32, "32FC1"),
          "720p_rgb8": ((720, 1280, 3), np.uint8, "rgb8")}


def ms(values_s) -> dict:
    v = np.asarray(values_s, float) * 1e3
    return {"p50_ms": round(float(np.percentile(v, 50)), 3), "p95_ms": round(float(np.percentile(v, 95)), 3)} \
        if len(v) else {}


def in_process(reps: int) -> dict:
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from textregion_ros.ros.convert import array_to_image, image_to_array
    out = {}
    for name, (shape, dtype, enc) in IMAGES.items():
        arr = (np.random.default_rng(0).random(shape) * 255).astype(dtype)
        build, ser, deser, view = [], [], [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            msg = array_to_image(arr, enc)
            t1 = time.perf_counter()
            raw = serialize_message(msg)
            t2 = time.perf_counter()
            back = deserialize_message(raw, Image)
            t3 = time.perf_counter()
            a = image_to_array(back)
            t4 = time.perf_counter()
            build.append(t1 - t0), ser.append(t2 - t1), deser.append(t3 - t2), view.append(t4 - t3)
        assert np.array_equal(a, arr)
        out[name] = {"bytes": arr.nbytes, "array_to_image": ms(build), "serialize_message": ms(ser),
                     "deserialize_message": ms(deser), "image_to_array": ms(view),
                     "image_to_array_is_a_view": bool(np.shares_memory(a, np.frombuffer(back.data, np.uint8)))}
    return out


PUBLISHER = r"""
import json, sys, time, rclpy, numpy as np
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from textregion_ros.ros.convert import array_to_image
count, fps, h, w, c, dtype, enc = int(sys.argv[1]), float(sys.argv[2]), *map(int, sys.argv[3:6]), sys.argv[6], sys.argv[7]
rclpy.init(); node = rclpy.create_node("transport_pub")
pub = node.create_publisher(Image, "bench_image", qos_profile_sensor_data)
deadline = time.monotonic() + 30
while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(1.0)  # let discovery settle, so the first samples are not lost to it
arr = (np.random.default_rng(1).random((h, w, c)[:3 if c > 1 else 2]) * 255).astype(dtype)
wall, cpu = [], []
period, t = 1.0 / fps, time.monotonic()
for _ in range(count):
    msg = array_to_image(arr, enc)
    msg.header.stamp = node.get_clock().now().to_msg()
    w0, c0 = time.perf_counter(), time.thread_time()
    pub.publish(msg)
    wall.append(time.perf_counter() - w0); cpu.append(time.thread_time() - c0)
    t += period
    time.sleep(max(0.0, t - time.monotonic()))
time.sleep(0.5)
print(json.dumps({"wall": wall, "cpu": cpu}))
"""


def between_processes(profile, name: str, image: str, count: int, fps: float, domain: int) -> dict:
    """Publisher and subscriber each in a process of its own: Fast DDS reads its profile once per process."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain),
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = profile
    sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER], env=env, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    assert sub.stdout.readline().strip() == "ready"
    shape, dtype, enc = IMAGES[image]
    h, w, c = (*shape, 1)[:3]
    pub = subprocess.run([sys.executable, "-c", PUBLISHER, str(count), str(fps), str(h), str(w), str(c),
                          np.dtype(dtype).name, enc], env=env, capture_output=True, text=True, timeout=600)
    sent = json.loads(pub.stdout.strip().splitlines()[-1])
    sub.stdin.write("done\n")
    sub.stdin.flush()
    res = json.loads(sub.stdout.readline())
    sub.wait(30)
    lat = np.asarray(res["lat_ns"], float) * 1e-9
    return {"transport": name, "image": image, "bytes": int(np.prod(shape)) * np.dtype(dtype).itemsize,
            "sent": count, "delivered": res["received"], "delivered_share": round(res["received"] / count, 3),
            "latency": ms(lat), "publish_call_wall": ms(sent["wall"]), "publish_call_cpu": ms(sent["cpu"]),
            "subscriber_cpu_ms_per_sample": round(1e3 * res["cpu_s"] / res["cpu_samples"], 3)
            if res.get("cpu_samples") else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=150)
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import rclpy
    rclpy.init()
    report = {"in_process": in_process(args.reps)}
    rclpy.shutdown()
    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
        f.write(UDP_ONLY)
    setups = (("shipped profile (SHM 64 MB + UDP loopback)", os.path.join(ROOT, "config", "fastdds_localhost.xml")),
              ("UDP loopback only", f.name), ("Fast DDS defaults", None))
    report["between_processes"] = []
    domain = 60 + os.getpid() % 100
    for name, profile in setups:
        for image in IMAGES:
            r = between_processes(profile, name, image, args.count, args.fps, domain)
            report["between_processes"].append(r)
            print(json.dumps(r), flush=True)
    os.unlink(f.name)
    print(json.dumps(report["in_process"], indent=2))
    print("\ntransport                                    image             delivered  latency p50/p95 ms  "
          "publish() cpu p50 ms  subscriber cpu ms/sample")
    for r in report["between_processes"]:
        print(f"{r['transport']:44s} {r['image']:16s} {r['delivered_share']:9.3f}  "
              f"{r['latency'].get('p50_ms', float('nan')):8.2f} / {r['latency'].get('p95_ms', float('nan')):<8.2f}  "
              f"{r['publish_call_cpu'].get('p50_ms', float('nan')):20.3f}  {r['subscriber_cpu_ms_per_sample']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
