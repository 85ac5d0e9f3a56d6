"""main(): the node in its own process, with Ctrl-C and SIGTERM ending it quietly, fast, with status 0.

rclpy's own signal handler is off: a second SIGINT (a terminal sends one to the whole process
group, and ros2 launch sends another) would otherwise land inside teardown as a KeyboardInterrupt.
Here a signal only sets an event. The main thread then stops the stages with a deadline and
leaves with os._exit, so a frame still in flight on a worker thread cannot hold the exit or
abort it in a C++ destructor. With autostart (the default) main configures and activates the
node itself; a failed configure exits 2 with its reason.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import List, Optional

import rclpy
from rclpy.exceptions import InvalidHandle
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

TEARDOWN_S = 1.5  # how long teardown may wait for the stages before leaving anyway
# The stages are threads of one process. numpy and torch release the GIL inside each call, and a thread that
# released it waits until the thread running Python gives it back, up to the switch interval (5 ms by
# default). A GPU frame is hundreds of short kernel launches, each such a wait while the publish stage or the
# executor runs Python. bench/bench_gil.py (2-core CPU): 300 small torch ops, 6.9 ms alone, took 757 ms
# beside a thread running Python at a 1 ms interval and 98 ms at 0.1 ms, and the Python thread did not slow
# down (1.26 and 1.35 of its rate measured alone). At 1 ms (against 5 ms) bench_node measured the memory's
# fusion 0.17-0.35 s against 0.48-0.52 s.
SWITCH_INTERVAL_S = 0.0001
# numpy's OpenBLAS runs a matrix product on every core, and its threads spin while they wait for each other. The
# memory's products are small (64 detections x 1,000 objects), and beside a busy perception node a spinning
# thread waits for a core the pipeline holds. bench_memory --replay of the proxy's frames: idle, 14.1 ms a frame
# with OpenBLAS's 2 threads and 14.8 ms with 1; beside two busy processes, 65 ms (p95 128) and 30 ms (p95 48).
MEMORY_BLAS_THREADS = 1


def _bring_up(node, stop: threading.Event, result: list) -> None:
    try:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            result.append(2)
        elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            result.append(1)
        else:
            result.append(0)
    except Exception as exc:  # our fault: report it and exit non-zero
        node.get_logger().fatal(f"bring-up failed: {type(exc).__name__}: {exc}")
        result.append(1)
    if result[-1]:
        stop.set()


def _spin(executor, stop: threading.Event) -> None:
    """The executor's thread. Teardown destroys what it waits on (the node, the context), and spin may
    then raise from inside rclpy; once stopping, that is the expected end, not something to print.

    While running, a subscription dropped by the flood guard or a deactivate can race the executor: rclpy
    catches a destroyed entity when it collects it but not when it adds a QoS event handler to the wait set
    (InvalidHandle, "destruction was requested"). The next wait collects the entities again without it, so
    the executor spins on instead of its thread dying with every callback of the node."""
    while True:
        try:
            executor.spin()
            return
        except InvalidHandle:
            if stop.is_set():
                return
        except Exception:
            if not stop.is_set():
                raise
            return


def _teardown(node, executor) -> None:
    done = threading.Event()

    def stop():
        try:
            node.stop_parts()
            executor.shutdown(timeout_sec=0.5)
            node.destroy_node()
            rclpy.try_shutdown()
        except Exception:  # leaving anyway; nothing useful to add to a clean stop
            pass
        done.set()

    threading.Thread(target=stop, daemon=True).start()
    done.wait(TEARDOWN_S)


def limit_blas(threads: int) -> Optional[str]:
    """numpy's BLAS thread pools down to ``threads`` in this process: None, or why it could not be done."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return "threadpoolctl is not installed (pip install threadpoolctl)"
    threadpool_limits(limits=threads, user_api="blas")
    return None


def run(node_class, args: Optional[List[str]] = None, blas_threads: Optional[int] = None) -> int:
    """The node's process; ``blas_threads`` limits numpy's BLAS in it (the memory node: MEMORY_BLAS_THREADS)."""
    stop = threading.Event()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    unlimited = limit_blas(blas_threads) if blas_threads else None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = node_class()
    if unlimited:
        node.get_logger().warning(f"numpy's BLAS keeps one thread per core: {unlimited}")
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    threading.Thread(target=_spin, args=(executor, stop), name="textregion-executor", daemon=True).start()
    result: list = []
    bring_up = threading.Thread(target=_bring_up, args=(node, stop, result), name="textregion-bringup",
                                daemon=True)
    if node.get_parameter("autostart").value:
        bring_up.start()
    while not stop.wait(0.2) and not node.finalized.is_set():  # a signal, or `ros2 lifecycle set ... shutdown`
        pass
    stop.set()  # also after a shutdown transition: the executor thread may now end by an exception
    # Ignore further signals: teardown is already under way and bounded.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    rc = result[0] if result else 0
    if rc == 2:
        rclpy.logging.get_logger("textregion").fatal(f"cannot start: {node.last_failure}")
    elif bring_up.is_alive():
        node.get_logger().info("interrupted during startup")
    else:  # Ctrl-C, SIGTERM or a shutdown transition, after start-up or with lifecycle by hand
        node.get_logger().info("shut down" if node.finalized.is_set() else "stopping")
    _teardown(node, executor)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
