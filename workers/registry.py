"""The method registry: CLI name → method class. Adding a method is one module and one decorator."""
from __future__ import annotations

import dataclasses
import importlib
import typing
from typing import Any, Callable, TypeVar

from workers.base import InpaintMethod

_METHODS: dict[str, type[InpaintMethod]] = {}
# The module that registers each method on import; listed here so `pipeline/` never changes for a new
# one, and by name so a run imports only its own method's module: importing torch (stylegan-inv)
# costs a process about 240 MiB of private memory, which the driver and a classical method's actor
# have no use for.
METHOD_MODULES: dict[str, str] = {
    "telea": "workers.opencv_inpaint",
    "ns": "workers.opencv_inpaint",
    "stylegan-inv": "workers.stylegan_inv",
}

M = TypeVar("M", bound=type[InpaintMethod])


class UnknownMethodError(KeyError):
    """A method name no module registered."""


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: make the method available as `--method NAME`."""

    def decorate(cls: M) -> M:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method '{name}' registered twice")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorate


def _load_all() -> None:
    for module in dict.fromkeys(METHOD_MODULES.values()):
        importlib.import_module(module)


def available_methods() -> dict[str, type[InpaintMethod]]:
    """Every registered method by name, sorted."""
    _load_all()
    return dict(sorted(_METHODS.items()))


def get_method(name: str) -> type[InpaintMethod]:
    """The class registered as `name`, importing only the module that registers it; the error lists
    what exists."""
    if name not in _METHODS and name in METHOD_MODULES:
        importlib.import_module(METHOD_MODULES[name])
    if name not in _METHODS:
        methods = available_methods()
        raise UnknownMethodError(f"unknown method '{name}'; available: {', '.join(methods)}")
    return _METHODS[name]


def _coerce(value: str, kind: Any, key: str) -> Any:
    if kind is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--method-opt {key}: expected true/false, got '{value}'")
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--method-opt {key}: expected {getattr(kind, '__name__', kind)}, got '{value}'") from exc


def build_config(cls: type[InpaintMethod], options: dict[str, str]) -> Any:
    """The method's Config with `key=value` overrides, typed from the dataclass fields."""
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    hints = typing.get_type_hints(cls.Config)
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(
            f"--method-opt: unknown option(s) {', '.join(unknown)} for method '{cls.name}'; "
            f"known: {', '.join(fields) or 'none'}"
        )
    values = {key: _coerce(value, hints[key], key) for key, value in options.items()}
    return cls.Config(**values)
