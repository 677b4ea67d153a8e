"""Option and argument values converted without pydantic.

typer 0.29 converts every value (a default included) through a pydantic
TypeAdapter built on first use. Importing pydantic and building the adapters
costs about 120 ms, more than the rest of a command's start-up, while our
parameters are only str, Path, int, float, bool and lists of them. For those,
`use_plain_coercion` gives each parameter a converter that does what typer's
adapter does for well-formed input, with typer's own path checks
(`coerce_cli_path`). Anything else (a malformed number, an unusual type) goes
to typer's pydantic path unchanged, so its values and error messages are
typer's own. This reaches into typer internals (`typer.core.build_runtime_param`);
when they change or vanish, typer is left alone (slower, never broken) and
tests/test_startup.py says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from typer import _click
from typer import core as typer_core

try:
    from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param
    from typer._param_types import coerce_cli_path
except ImportError:  # another typer: its own conversion, which is only slower
    RuntimeParam = object  # type: ignore[assignment,misc]
    TypeDescriptor = Any  # type: ignore[assignment,misc]
    build_runtime_param = None  # type: ignore[assignment]

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_LEAVES = (str, Path, int, float, bool)


class _Delegate(Exception):
    """The value needs typer's own (pydantic) conversion."""


@dataclass(frozen=True)
class _PlainParam(RuntimeParam):
    descriptor: TypeDescriptor

    def _coerce_value(self, value: Any, param: Any, ctx: _click.Context) -> Any:
        try:
            if get_origin(self.annotation) is list:
                if not isinstance(value, (list, tuple)):
                    raise _Delegate
                item = get_args(self.annotation)[0]
                return [self._leaf(item, v, param, ctx) for v in value]
            return self._leaf(self.annotation, value, param, ctx)
        except _Delegate:
            return build_runtime_param(self.descriptor)._coerce_value(value, param, ctx)

    def _leaf(self, kind: type, value: Any, param: Any, ctx: _click.Context) -> Any:
        info = self.parameter_info
        if kind is str and isinstance(value, str):
            return value
        if kind is bool and isinstance(value, bool):
            return value
        if kind is Path and isinstance(value, (str, Path)) and value != "":
            path = value if isinstance(value, Path) else Path(value)
            return coerce_cli_path(path, info, path_type=Path, param=param, ctx=ctx)
        if kind is int:
            number = _int(value)
        elif kind is float:
            number = _float(value)
        else:
            raise _Delegate
        if (info.min is not None and number < info.min) or (
            info.max is not None and number > info.max
        ):
            raise _Delegate  # out of range: typer words the error
        return number


def _int(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, str) and _INT.fullmatch(value):
        return int(value)
    raise _Delegate


def _float(value: Any) -> float:
    if type(value) in (int, float):
        return float(value)
    if isinstance(value, str) and _FLOAT.fullmatch(value):
        return float(value)
    raise _Delegate


def _plain_kind(descriptor: TypeDescriptor) -> bool:
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None or info.parser is not None or info.clamp:
        return False
    if info.path_type is not None:
        return False
    annotation = descriptor.annotation
    if get_origin(annotation) is list:
        args = get_args(annotation)
        return len(args) == 1 and args[0] in _LEAVES
    return annotation in _LEAVES


def _build(descriptor: TypeDescriptor) -> RuntimeParam:
    if _plain_kind(descriptor):
        return _PlainParam(parameter_info=descriptor.parameter_info,
                           annotation=descriptor.annotation, descriptor=descriptor)
    return build_runtime_param(descriptor)


def use_plain_coercion() -> None:
    """Have typer build plain converters for the parameters that allow one (idempotent).

    typer.core looks `build_runtime_param` up when a parameter first converts a value,
    which covers the parameters typer adds itself (--help) too.
    """
    if build_runtime_param is None:
        return
    if getattr(typer_core, "build_runtime_param", None) is build_runtime_param:
        typer_core.build_runtime_param = _build
