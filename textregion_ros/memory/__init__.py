"""Object memory: a live, text-queryable map of the objects the camera has seen. No ROS here.

    memory = ObjectMemory(MemoryConfig())
    memory.integrate(Observation(stamp_ns, "head", pose, K, depth_m, detections))   # each frame
    ids, tokens = memory.tokens()               # (row ids, (N, D) tokens): score them against a query
    ranked = memory.rank(ids, probs, cosines, limit=10)   # [(MemoryObject, prob, cosine)], best first
    save_memory(path, memory, header); n = load_memory(path, expected_header, memory)   # fills ``memory``

Frames: a detection's points and the camera pose are in the memory frame (``map`` or ``odom``);
the caller looks the pose up at the frame's stamp and never fuses a frame without one.
"""
from .config import MemoryConfig
from .objects import Detection, MemoryObject, Observation
from .persist import MemoryFileError, load_memory, save_memory
from .store import ObjectMemory

__all__ = ["Detection", "MemoryConfig", "MemoryFileError", "MemoryObject", "ObjectMemory", "Observation",
           "load_memory", "save_memory"]
