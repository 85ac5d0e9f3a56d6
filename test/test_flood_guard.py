"""FloodGuard (ros/flood_guard.py) on a fake clock: when an image topic is paused, for how long, and when it
is heard again. test_node_cameras.py shows the same over DDS."""
from types import SimpleNamespace

from textregion_ros.ros.diagnostics import Stats
from textregion_ros.ros.flood_guard import FIRST_PAUSE_S, FLOOD_REFUSED, LONGEST_PAUSE_S, FloodGuard


class Log:
    def __init__(self):
        self.lines = []

    def warning(self, text):
        self.lines.append(text)


def guard():
    from textregion_ros.ros.context import NodeContext
    now = [100.0]
    subs = []
    made = []
    ctx = NodeContext(Log(), Stats(), lambda: 0, SimpleNamespace())
    g = FloodGuard(ctx, lambda: made.append(len(made)) or f"sub{len(made)}", subs.append, "/cam/image",
                   clock=lambda: now[0])
    g.open()
    return g, ctx, now, made, subs


def test_a_second_of_only_refused_frames_pauses_the_topic_and_it_is_heard_again_after():
    g, ctx, now, made, destroyed = guard()
    for _ in range(FLOOD_REFUSED - 1):
        g.refused()
    assert g.sub == "sub1" and not destroyed, "under the bar: still listening"
    g.refused()
    assert g.paused_until is not None and not destroyed, "dropped by the timer, not in its own callback"
    g.tick()
    assert g.sub is None and destroyed == ["sub1"]
    assert ctx.stats.snapshot().get("bad_input/image_flood") == 1
    assert "not listening to it for 2 s" in ctx.logger.lines[-1]
    g.refused()  # one in flight after the pause began: no second destroy
    assert destroyed == ["sub1"]
    now[0] += FIRST_PAUSE_S - 0.1
    g.tick()
    assert g.sub is None
    now[0] += 0.2
    g.tick()
    assert g.sub == "sub2" and made == [0, 1]


def test_a_usable_frame_in_the_second_keeps_the_topic_and_the_window_rolls():
    g, _, now, _, destroyed = guard()
    g.usable()
    for _ in range(3 * FLOOD_REFUSED):
        g.refused()
    assert not destroyed, "a camera that also sends usable frames is never paused"
    now[0] += 1.0  # a new second: the usable frame is behind it
    for _ in range(FLOOD_REFUSED // 2):
        g.refused()
    now[0] += 1.0  # refusals spread over seconds, under the bar in each
    for _ in range(FLOOD_REFUSED // 2):
        g.refused()
    assert not destroyed


def test_the_pause_doubles_while_the_flood_goes_on_and_a_usable_frame_resets_it():
    g, _, now, _, _ = guard()
    pauses = []
    for _ in range(6):
        for _ in range(FLOOD_REFUSED):
            g.refused()
        pauses.append(g.paused_until - now[0])
        g.tick()  # drops it
        now[0] = g.paused_until
        g.tick()  # subscribes again
    assert pauses == [2.0, 4.0, 8.0, 16.0, LONGEST_PAUSE_S, LONGEST_PAUSE_S]
    g.usable()
    now[0] += 1.0
    for _ in range(FLOOD_REFUSED):
        g.refused()
    assert g.paused_until - now[0] == FIRST_PAUSE_S


def test_close_drops_the_subscription_and_a_later_tick_does_not_bring_it_back():
    g, _, now, _, destroyed = guard()
    for _ in range(FLOOD_REFUSED):
        g.refused()
    g.tick()
    g.close()
    now[0] += 100
    g.tick()
    assert g.sub is None and destroyed == ["sub1"]
