"""Declared options: a dataclass says what a model or a call accepts; anything else is refused before work.

Fields use plain annotations (bool, int, float, str, Literal[...], tuple[str, ...], X | None) and
`option(default, minimum=...)` for bounds. Values from the command line arrive as text and are read as
JSON first (`-o max_pixels=50176` is an int, `-o labels='["cat","dog"]'` a list), else as a string.
"""

import dataclasses
import inspect
import json
import math
import types
import typing
from typing import Any, Literal, Union

from .errors import BadInput


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A model or call that takes no options."""


def option(default, *, minimum=None):
    return dataclasses.field(default=default, metadata={"minimum": minimum})


def type_name(hint):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (tuple, list):
        return f"a list of {type_name(args[0])}" if args else "a list"
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint))


def listing(cls):
    """'name (type), ...' for every field of an options class."""
    hints = typing.get_type_hints(cls)
    return ", ".join(f"{f.name} ({type_name(hints[f.name])})" for f in dataclasses.fields(cls)) or "none"


def conform(value, hint):
    """(True, value as the hint wants it) when `value` fits the annotation, else (False, value)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True, value
    if origin in (Union, types.UnionType):
        for arg in args:
            ok, converted = conform(value, arg)
            if ok:
                return True, converted
        return False, value
    if origin is Literal:
        return value in args, value
    if origin in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            return False, value
        items = [conform(v, args[0] if args else Any) for v in value]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if hint is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and math.isfinite(value), float(value) if number else value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is type(None):
        return value is None, value
    return isinstance(value, origin or hint), value


def validate(cls, values, what):
    """An instance of the options dataclass `cls` from a mapping, or a BadInput naming the valid options."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in values:
        if name not in fields:
            raise BadInput(f"{what}: unknown option {name!r}. Valid options: {listing(cls)}.")
    hints, checked = typing.get_type_hints(cls), {}
    for name, value in values.items():
        ok, checked[name] = conform(value, hints[name])
        if not ok:
            raise BadInput(f"{what}: option {name}={value!r} must be {type_name(hints[name])}.")
        minimum = fields[name].metadata.get("minimum")
        if minimum is not None and checked[name] is not None and checked[name] < minimum:
            raise BadInput(f"{what}: option {name}={value!r} must be at least {minimum}.")
    missing = [n for n, f in fields.items() if n not in checked and _required(f)]
    if missing:
        raise BadInput(f"{what}: option {missing[0]!r} is required. Valid options: {listing(cls)}.")
    return cls(**checked)


def _required(field):
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def given(options):
    """The fields of an options instance as a dict (to pass on as keyword arguments)."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def from_signature(fn, defaults, name):
    """An options dataclass from a function's keyword parameters, with `defaults` replacing theirs."""
    fields = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        hint = param.annotation if param.annotation is not param.empty else Any
        default = defaults.get(param.name, param.default)
        spec = dataclasses.field() if default is param.empty else dataclasses.field(default=default)
        fields.append((param.name, hint, spec))
    return dataclasses.make_dataclass(name, fields, frozen=True)


def parse_assignments(pairs):
    """{'key': value} from the CLI's repeated `-o key=value`; a value is JSON when it parses as JSON."""
    values = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"-o {pair!r}: write options as -o key=value (for example -o max_pixels=50176).")
        try:
            values[key.strip()] = json.loads(text)
        except ValueError:
            values[key.strip()] = text
    return values
