"""Messages copied from a prototype instead of constructed, where a frame builds many of one kind.

rosidl's generated ``__init__`` builds a default for every nested field eagerly, even for a field the caller
passes (``kwargs.get('texture', CompressedImage())``): a Marker costs about 140 us, a Region 34 us, and a
frame's 64 regions and 128 markers were most of the publish stage's Python, all of it holding the GIL the
inference thread needs. ``like`` copies a prototype's slots directly: a Region in about 3.6 us and a Marker in
4.5 us, against 6.2 and 9.9 us with ``copy.copy`` (``__reduce_ex__`` and a state dict per call).

A copy shares the prototype's nested messages: whoever fills one assigns new nested values (``m.pose =
Pose(...)``) and never mutates a nested one in place (``m.pose.position.x = ...`` would change every copy).
"""
from __future__ import annotations

from functools import lru_cache
from operator import attrgetter
from typing import Callable, Tuple, TypeVar

M = TypeVar("M")


@lru_cache(maxsize=None)
def _slots(cls) -> Tuple[Tuple[str, ...], Callable]:
    """A generated message class's slots (every field's storage, and ``_check_fields``) and one getter of all."""
    names = tuple(n for c in cls.__mro__ for n in getattr(c, "__slots__", ()))
    return names, attrgetter(*names)


def like(proto: M) -> M:
    """A new message with ``proto``'s field values (nested messages shared, not copied)."""
    cls = type(proto)
    names, values = _slots(cls)
    new = cls.__new__(cls)
    for name, value in zip(names, values(proto)):
        setattr(new, name, value)
    return new
