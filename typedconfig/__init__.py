"""Typed configuration: dataclasses are the single source of truth, argparse flags are derived from them.

Every job and training entry point declares its settings as a dataclass; `add_dataclass_args` turns the
fields into `--flag-name` options (help text from `field(metadata={"help": ...})`) and `dataclass_from_args`
builds the instance back, so defaults live in exactly one place. A tuple field is a comma-separated list
that may also be repeated; with `metadata={"split": False}` it is repeat-only, for items that may hold commas.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp: Any) -> Any:
    """Strip Optional[...] / X | None down to X."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


class _ListAction(argparse.Action):
    """A comma-separated list flag that may also be repeated: `--x a,b --x c` is (a, b, c); the first use
    replaces the default."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = getattr(namespace, f"_{self.dest}_given", False)
        current = tuple(getattr(namespace, self.dest) or ()) if seen else ()
        setattr(namespace, self.dest, current + tuple(values))
        setattr(namespace, f"_{self.dest}_given", True)


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """Add one option per dataclass field; required fields (no default) become required options."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp = _base_type(hints[f.name])
        kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help", "")}
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if has_default:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kwargs["default"] = default
            kwargs["help"] = f"{kwargs['help']} (default: {default})".strip()
        else:
            kwargs["required"] = True
        if tp is bool:
            kwargs["type"] = _parse_bool
            kwargs["nargs"] = "?"
            kwargs["const"] = True
            kwargs["metavar"] = "BOOL"
        elif typing.get_origin(tp) in (tuple, list):
            (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
            if f.metadata.get("split", True):
                kwargs["type"] = lambda s, item=item: tuple(item(x) for x in s.split(",") if x)
                kwargs["metavar"] = "A,B,..."
            else:  # repeat-only: each use is one item, commas and all (`--conf k=a,b`)
                kwargs["type"] = lambda s, item=item: (item(s),)
                kwargs["metavar"] = f.metadata.get("metavar", "VALUE")
            kwargs["action"] = _ListAction
        elif tp in (int, float, str):
            kwargs["type"] = tp
        parser.add_argument(_flag(f.name), **kwargs)


def dataclass_from_args(cls: type[T], ns: argparse.Namespace, **overrides: Any) -> T:
    """Build `cls` from parsed options (only fields present in `ns`), then apply `overrides`."""
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if f.init and hasattr(ns, f.name)}
    values.update(overrides)
    return cls(**values)


def to_dict(obj: Any) -> dict[str, Any]:
    """JSON-ready dict of a (nested) dataclass, for manifests and run directories."""
    return dataclasses.asdict(obj)
