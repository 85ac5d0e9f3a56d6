"""The node's parameters: declared from the knob table, validated in on_set, applied in post_set.

rclpy's idiom: the on_set callback only decides (the whole set is valid or none of it applies),
and the post_set callback applies. Every change takes one route: the node's PipelineConfig and
NodeSettings are replaced, and the parts that consume a knob are told (``Applier``).
"""
from __future__ import annotations

import dataclasses
import difflib

from typing import Any, Callable, Dict, List, Optional, Tuple

import rclpy
import rclpy.parameter
from rcl_interfaces.msg import ParameterType, SetParametersResult

from ..config import DEPRECATED, PipelineConfig, preset, renamed
from ..memory.persist import path_problem
from .loading import StartupError
from .settings import (DEPENDS_ON, RUNTIME_KNOBS, NodeSettings, check_together, descriptor, effective_defaults,
                       in_use, node_settings, pipeline_config)

# Every list-of-strings knob: the rows whose default is a tuple (vocabulary, background, cameras, queries).
ARRAY_PARAMS = tuple(f.name for cls in (PipelineConfig, NodeSettings) for f in dataclasses.fields(cls)
                     if isinstance(f.default, tuple))
TEXT_KNOBS = ("vocabulary", "background")


def _as_python(name: str, value: Any, floats=()) -> Any:
    if name in floats and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # `ros2 param set ... max_rate 5`: an integer is a fine double
    if isinstance(value, (list, tuple)):
        if name in ARRAY_PARAMS and not all(isinstance(x, str) for x in value):
            raise ValueError(f"{name} must be a list of strings")
        return tuple(value)
    if name in ARRAY_PARAMS:  # an empty list can arrive typed as another array type
        raise ValueError(f"{name} must be a list of strings")
    return value


def empty_list(value) -> bool:
    """An empty list as rclpy may hand it over: untyped (None), or an empty array of any element type."""
    return value is None or (not isinstance(value, (str, bytes)) and hasattr(value, "__len__") and len(value) == 0)


def string_list(name: str):
    return rclpy.parameter.Parameter(name, rclpy.parameter.Parameter.Type.STRING_ARRAY, [])


def checked(values: Dict[str, Any]):
    """(config or None, settings or None, problems): the pipeline's rows, the node's and the rules across
    them, every problem found, so a user fixes them all in one go."""
    config = settings = None
    found: List[str] = []
    try:
        config = pipeline_config(values)
    except (ValueError, TypeError) as exc:
        found.append(str(exc))
    try:
        settings = node_settings(values)
    except (ValueError, TypeError) as exc:
        found.append(str(exc))
    if config is not None and settings is not None:
        try:
            check_together(config, settings)
        except ValueError as exc:
            found.append(str(exc))
    return config, settings, found


class Parameters:
    """Declares every knob on ``node`` and keeps the validated config and settings they give."""

    def __init__(self, node, apply: Callable[[Dict[str, Any], Dict[str, Any], Optional[Tuple[str, ...]]], None]):
        self.node = node
        self.apply = apply  # (runtime pipeline knobs, text knobs, new standing queries or None)
        self.problems: List[str] = []  # every bad declared value: configure fails with all of them
        self.floats: set = set()  # double knobs, which take integers too
        overrides = getattr(node, "_parameter_overrides", None) or {}
        self._prepare(overrides)
        self.values = self._declare(overrides)
        config, settings, found = checked(self.values)
        self.config, self.settings = config, settings or NodeSettings()
        self.problems += found
        self._warn_unknown(overrides)
        node.add_pre_set_parameters_callback(self.pre_set)
        node.add_on_set_parameters_callback(self.on_set)
        node.add_post_set_parameters_callback(self.post_set)

    def _declare(self, overrides) -> Dict[str, Any]:
        node = self.node
        preset_name = node.declare_parameter("preset", "realtime", descriptor("preset", "realtime")).value
        try:
            defaults = effective_defaults(preset_name)
        except ValueError as exc:
            self.problems.append(str(exc))
            defaults = effective_defaults("realtime")
        values: Dict[str, Any] = {"preset": preset_name}
        order = [n for n in defaults if n not in DEPENDS_ON and n != "preset"] + list(DEPENDS_ON)
        for name in order:
            value = defaults[name]
            if name in DEPENDS_ON:
                given = {k: values[k] for k in DEPENDS_ON[name]}
                value = getattr(in_use(self._preset_with(preset_name, **given)), name)
            d = descriptor(name, value)
            if name in ARRAY_PARAMS:
                d.type = ParameterType.PARAMETER_STRING_ARRAY
                d.dynamic_typing = True  # an empty list arrives typed as a byte array; we check elements
            elif isinstance(value, float):  # integers accepted and converted; on_set checks type and range
                d.dynamic_typing = True
                self.floats.add(name)
            try:
                values[name] = node.declare_parameter(name, value, d).value
            except (rclpy.exceptions.ParameterException, TypeError, ValueError):
                # rclpy refused the given value (its range or type): declared with the default, while the
                # given value is checked below with every other, so all are reported at once in our words.
                node.declare_parameter(name, value, d, ignore_override=True)
                values[name] = overrides[name].value if name in overrides else value
        # rclpy types an empty list by its value (a byte array). The same empty value, typed as declared (a list
        # of strings), goes straight into rclpy's table: set_parameters would refuse read-only ones (cameras).
        table, described = getattr(node, "_parameters", {}), getattr(node, "_descriptors", {})
        for n in ARRAY_PARAMS:
            if n in table and empty_list(values.get(n)):
                table[n] = string_list(n)
                if n in described:
                    described[n].type = ParameterType.PARAMETER_STRING_ARRAY
        out = {}
        for k, v in values.items():
            try:
                out[k] = _as_python(k, v, self.floats)
            except ValueError as exc:
                self.problems.append(str(exc))
                out[k] = tuple(defaults[k]) if isinstance(defaults.get(k), (list, tuple)) else defaults.get(k, v)
        return out

    @property
    def error(self) -> Optional[str]:
        """Why configure must fail: every bad value at once (None when all are good)."""
        return "; ".join(self.problems) or None

    def check_startup(self) -> None:
        """Configure's check: every bad value, and where memory_file points now (a FIFO would block its load,
        /dev or a missing directory would fail its first save): StartupError with every reason."""
        found = list(self.problems)
        s = self.settings
        if s.memory and s.memory_file:
            problem = path_problem(s.memory_file)
            if problem:
                self.node.stats.count("bad_input/memory_file")
                found.append(f"memory_file: {problem}")
        if found:
            raise StartupError(f"bad parameters: {'; '.join(found)}")

    def _prepare(self, overrides) -> None:
        """What users write, before rclpy declares from it (YAML, -p, a dumped params file): an empty list
        arrives untyped (``[]``), and becomes an empty list of strings; a deprecated name (config.DEPRECATED)
        sets its successor, with a warning (a successor given too wins)."""
        for name in ARRAY_PARAMS:
            if name in overrides and empty_list(overrides[name].value):
                overrides[name] = string_list(name)
        given = {k: v.value for k, v in overrides.items()}
        for name, value in renamed(given, self.node.get_logger().warning).items():
            if name not in overrides:
                overrides[name] = rclpy.parameter.Parameter(name, value=value)

    def _warn_unknown(self, overrides) -> None:
        """A key no knob has (a typo, a removed knob) would be ignored by rclpy without a word: name it and the
        closest knob."""
        known = set(self.values) | set(DEPRECATED) | {"use_sim_time", "start_type_description_service"}
        for name in sorted(k for k in overrides if k not in known and not k.startswith("qos_overrides.")):
            close = difflib.get_close_matches(name, sorted(self.values), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.node.stats.count("bad_input/parameter")
            self.node.get_logger().warning(f"parameter {name!r} is not a parameter of this node and is ignored{hint}")

    def pre_set(self, params) -> list:
        """rclpy's pre-set step, which sees every set before anything refuses it: an empty list (``ros2 param set
        ... queries "[]"`` arrives as an empty array of booleans) keeps its declared type, a list of strings; and
        a set that will be refused (rclpy's type and range checks, read-only knobs, or ours) is counted and
        logged here, once, with the parameter and the reason."""
        params = [string_list(p.name) if p.name in ARRAY_PARAMS and empty_list(p.value) else p for p in params]
        reason = self._refusal(params)
        if reason:
            self.node.stats.count("bad_input/parameter")
            self.node.get_logger().warning(f"refused parameter set: {reason}", throttle_duration_sec=5.0)
        return params

    def _refusal(self, params) -> Optional[str]:
        """Why this set will be refused, or None."""
        for p in params:
            if not self.node.has_parameter(p.name):
                return f"{p.name}: no such parameter"
            if self.node.describe_parameter(p.name).read_only:
                return f"{p.name} is read-only: set it in the params file and restart the node"
        try:
            self._probe(params)
        except (ValueError, TypeError) as exc:
            return str(exc)
        return None

    @staticmethod
    def _preset_with(preset_name: str, **values):
        try:
            return preset(preset_name, **values)
        except ValueError:
            return preset("realtime")

    def _probe(self, params) -> Tuple[PipelineConfig, NodeSettings, Dict[str, Any]]:
        """The config and settings that ``params`` would give (raises ValueError with every reason)."""
        changed = {p.name: _as_python(p.name, p.value, self.floats) for p in params}
        config, settings, found = checked({**self.values, **changed})
        if found:
            raise ValueError("; ".join(found))
        return config, settings, changed

    def on_set(self, params) -> SetParametersResult:
        """Validate only: the whole set, against the values in force."""
        try:
            self._probe(params)
        except (ValueError, TypeError) as exc:  # counted and logged by pre_set
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def post_set(self, params) -> None:
        """Apply a set that on_set accepted."""
        config, settings, changed = self._probe(params)
        old_queries = self.settings.queries
        self.values.update(changed)
        self.config, self.settings = config, settings
        runtime = {k: getattr(config, k) for k in changed if k in RUNTIME_KNOBS and k not in TEXT_KNOBS}
        text = {k: getattr(config, k) for k in changed if k in TEXT_KNOBS}
        self.apply(runtime, text, settings.queries if settings.queries != old_queries else None)
