"""The node's QoS choices, each with its reason."""
from __future__ import annotations

from rclpy.event_handler import PublisherEventCallbacks
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

SERVICE_QUEUE = 1000  # ground requests held while earlier ones are answered

# The active query: a late subscriber (RViz, a planner started later) gets the one in use.
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
QUERY = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# KEEP_ALL: a burst of concurrent calls is queued and every caller gets an answer.
SERVICE = QoSProfile(history=HistoryPolicy.KEEP_ALL, depth=SERVICE_QUEUE, reliability=ReliabilityPolicy.RELIABLE)


# Output publishers without rclpy's default QoS-event handlers. rclpy makes two per publisher (incompatible
# QoS, incompatible type), and its executor walks every handler in Python on each wake-up, holding the GIL:
# 40 publishers with them cost 1.4 ms of CPU per wake-up, 0.4 ms without, and the node wakes for every image,
# depth and camera_info message. A reliable, volatile output is compatible with any subscriber that does not
# ask for transient_local; the camera and query subscriptions keep their handlers (a user's QoS mistake is
# likely there, and the diagnostics name it).
QUIET = PublisherEventCallbacks(use_default_callbacks=False)


def camera_qos(image_qos: str) -> QoSProfile:
    """Sensor-data QoS (best effort, keep last 5), or reliable keep-last-1. A deeper reader queue was measured:
    on a saturated 2-core machine it made rclpy deserialize every 1 MB frame and cut the processed rate by 3x."""
    if image_qos == "sensor_data":
        return qos_profile_sensor_data
    return QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
