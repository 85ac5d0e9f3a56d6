"""The node's parameters: declared from the knob table, validated in on_set, applied in post_set.

rclpy's idiom: the on_set callback only decides (the whole set is valid or none of it applies),
and the post_set callback applies. Every change takes one route: the node's PipelineConfig and
NodeSettings are replaced, and the parts that consume a knob are told (``Applier``).
"""
from __future__ import annotations

import dataclasses

from typing import Any, Callable, Dict, Optional, Tuple

import rclpy
import rclpy.parameter
from rcl_interfaces.msg import ParameterType, SetParametersResult

from ..config import PipelineConfig, preset, renamed
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


class Parameters:
    """Declares every knob on ``node`` and keeps the validated config and settings they give."""

    def __init__(self, node, apply: Callable[[Dict[str, Any], Dict[str, Any], Optional[Tuple[str, ...]]], None]):
        self.node = node
        self.apply = apply  # (runtime pipeline knobs, text knobs, new standing queries or None)
        self.error: Optional[str] = None  # a bad declared value: configure fails with it
        self.floats: set = set()  # double knobs, which take integers too
        self.values = self._declare()
        self.config: Optional[PipelineConfig] = None
        self.settings = NodeSettings()
        try:
            self.config = pipeline_config(self.values)
            self.settings = node_settings(self.values)
            check_together(self.config, self.settings)
        except (ValueError, TypeError) as exc:
            self.error = self.error or str(exc)
        node.add_on_set_parameters_callback(self.on_set)
        node.add_post_set_parameters_callback(self.post_set)

    def _declare(self) -> Dict[str, Any]:
        node = self.node
        self._rename_deprecated(getattr(node, "_parameter_overrides", None))
        preset_name = node.declare_parameter("preset", "realtime", descriptor("preset", "realtime")).value
        try:
            defaults = effective_defaults(preset_name)
        except ValueError as exc:
            self.error = str(exc)
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
            except (rclpy.exceptions.ParameterException, TypeError, ValueError) as exc:
                self.error = self.error or f"parameter {name}: {exc}"
                values[name] = node.declare_parameter(name, value, d, ignore_override=True).value
        try:
            return {k: _as_python(k, v, self.floats) for k, v in values.items()}
        except ValueError as exc:
            self.error = self.error or str(exc)
            return {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in defaults.items()}

    def _rename_deprecated(self, overrides) -> None:
        """A deprecated name given in YAML or on the command line (config.DEPRECATED) sets its successor,
        with a warning; a successor given too wins. rclpy declares from these overrides."""
        if not overrides:
            return
        given = {k: v.value for k, v in overrides.items()}
        for name, value in renamed(given, self.node.get_logger().warning).items():
            if name not in overrides:
                overrides[name] = rclpy.parameter.Parameter(name, value=value)

    @staticmethod
    def _preset_with(preset_name: str, **values):
        try:
            return preset(preset_name, **values)
        except ValueError:
            return preset("realtime")

    def _probe(self, params) -> Tuple[PipelineConfig, NodeSettings, Dict[str, Any]]:
        """The config and settings that ``params`` would give (raises ValueError with the reason)."""
        changed = {p.name: _as_python(p.name, p.value, self.floats) for p in params}
        values = {**self.values, **changed}
        config, settings = pipeline_config(values), node_settings(values)
        check_together(config, settings)
        return config, settings, changed

    def on_set(self, params) -> SetParametersResult:
        """Validate only: the whole set, against the values in force."""
        try:
            self._probe(params)
        except (ValueError, TypeError) as exc:
            self.node.stats.count("bad_input/parameter")
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