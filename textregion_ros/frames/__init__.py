"""What happens between full frames, in one wing (no ROS here).

schedule.py (FrameScheduler: the one place that decides each frame's kind, full | target | propagated,
with one knob, ``full_every``), target.py (a target frame: the queries' patch maps place SAM2's prompts,
and each query grounds among its own candidates), patch_maps.py, prompt_points.py, carry.py (SAM2 carrying
the locked target between full frames), image.py (a camera frame as the models take it).
"""
from .schedule import FULL, KINDS, PROPAGATED, TARGET, FrameScheduler

__all__ = ["FULL", "KINDS", "PROPAGATED", "TARGET", "FrameScheduler"]
