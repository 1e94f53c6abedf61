"""Command-line options generated from the settings models, so that each is declared once.

A field `some_name` becomes `--some-name`: its type parses the text, its
`Field(description=...)` is the help, with the default after it; a `Literal` gives the
choices; a bool is a switch, `--name` when it defaults to False, and `--name` /
`--no-name` when it defaults to True. A nested model adds its fields to the same command. A nested
pydantic-settings group is read from the environment and adds only its fields marked
with `Option`. `Option(...)` in a field's `Annotated[...]` says what the rule cannot guess.

Options that are not given are left out of the model's input, so its default applies,
or the environment variable that the field's `Option(env=...)` names, when it is set.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

Model = TypeVar("Model", bound=BaseModel)
_METAVARS: dict[Any, str] = {int: "N", float: "X"}


@dataclass(frozen=True)
class Option:
    """How a settings field appears on the command line, where the default rule does not fit."""

    flags: tuple[str, ...] = ()  # its spellings, the first one shown first; else --kebab-name
    env: str | None = None  # environment variable read when the option is not given
    parse: Callable[[str], Any] | None = None  # text -> the field's input, if not its type
    metavar: str | None = None
    default_text: str | None = None  # the default as --help shows it, if not str(default)
    positional: bool = False  # a value after the options; a list field takes several
    hidden: bool = False  # accepted, not shown in --help
    skip: bool = False  # not an option (another field sets it)


@dataclass(frozen=True)
class _Leaf:
    """A field that is an option, with its path from the command's model."""

    path: tuple[str, ...]
    info: FieldInfo
    option: Option
    group: str | None  # the argument group of --help
    env: str | None  # the environment variable behind it, for --help


def add_options(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """Add an argument to `parser` for each option of `model`."""
    groups: dict[str | None, Any] = {None: parser}
    for leaf in _leaves(model):
        if leaf.group not in groups:
            groups[leaf.group] = parser.add_argument_group(leaf.group)
        flags, kwargs = _argument(leaf)
        groups[leaf.group].add_argument(*flags, **kwargs)


def settings_from_args(
    model: type[Model], args: argparse.Namespace, environ: Mapping[str, str]
) -> Model:
    """Build `model` from the options given and the environment variables its fields name."""
    return model(**_values(model, vars(args), environ, ()))


def _values(
    model: type[BaseModel],
    given: Mapping[str, Any],
    environ: Mapping[str, str],
    prefix: tuple[str, ...],
) -> dict[str, Any]:
    """The input of `model` (nested groups built) from what was given."""
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        option = _option(info) or Option()
        nested = _nested(info)
        if nested is not None:
            values[name] = nested(**_values(nested, given, environ, path))
        elif ".".join(path) in given:
            values[name] = given[".".join(path)]
        elif option.env and option.env in environ:
            values[name] = environ[option.env]
    return values


def _leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[_Leaf]:
    """The fields of `model` that are options, nested groups flattened."""
    env_group = issubclass(model, BaseSettings)
    env_prefix = str(model.model_config.get("env_prefix", "")) if env_group else ""
    for name, info in model.model_fields.items():
        option, nested = _option(info), _nested(info)
        if nested is not None:
            yield from _leaves(nested, (*prefix, name))
        elif (option is None and env_group) or (option is not None and option.skip):
            continue
        else:
            option = option or Option()
            env = option.env or ((env_prefix + name).upper() if env_group else None)
            yield _Leaf((*prefix, name), info, option, _group(model, name), env)


def _argument(leaf: _Leaf) -> tuple[list[str], dict[str, Any]]:
    """The flags and keyword arguments of `add_argument` for one field."""
    info, option, name = leaf.info, leaf.option, leaf.path[-1]
    kind = _without_none(info.annotation)
    kwargs: dict[str, Any] = {"help": argparse.SUPPRESS if option.hidden else _help(leaf)}
    if option.positional:
        return [name], {**kwargs, **_positional(info, kind, option)}
    kwargs.update(dest=".".join(leaf.path), default=argparse.SUPPRESS)
    kebab = name.replace("_", "-")
    flags = list(option.flags or (f"--{kebab}",))
    if kind is bool:
        action = argparse.BooleanOptionalAction if info.default is True else "store_true"
        return flags, {**kwargs, "action": action}
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        kwargs.update(choices=choices, type=option.parse or type(choices[0]))
        kwargs["metavar"] = option.metavar
    else:
        kwargs["type"] = option.parse or (kind if kind in (int, float) else str)
        kwargs["metavar"] = option.metavar or _METAVARS.get(kind, name.upper())
    return flags, kwargs


def _positional(info: FieldInfo, kind: Any, option: Option) -> dict[str, Any]:
    """A positional's keywords: a list takes one or more values (or none, with a default)."""
    if typing.get_origin(kind) is list:
        item = typing.get_args(kind)[0]
        nargs = "+" if info.is_required() else "*"
        extra = {} if info.is_required() else {"default": argparse.SUPPRESS}
        return {"nargs": nargs, "metavar": option.metavar, "type": option.parse or item, **extra}
    return {"metavar": option.metavar, "type": option.parse or kind}


def _help(leaf: _Leaf) -> str:
    """The field's description, then its environment variable and default."""
    notes = [f"env {leaf.env}"] if leaf.env else []
    default = leaf.option.default_text or _default_text(leaf.info)
    if default:
        notes.append(f"default: {default}")
    text = leaf.info.description or ""
    if notes:
        text = f"{text} ({'; '.join(notes)})" if text else "; ".join(notes)
    return text.replace("%", "%%")  # argparse %-formats help


def _default_text(info: FieldInfo) -> str | None:
    """The default worth showing: `on` for a switch that is on, none for unset values."""
    default = info.default
    if default is True:
        return "on"
    if default is PydanticUndefined or default is None or default is False:
        return None
    return str(default) if isinstance(default, str | int | float | Path) else None


def _group(model: type[BaseModel], name: str) -> str | None:
    """The `cli_group` of the class that declares the field, if it has one."""
    for klass in model.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            return vars(klass).get("cli_group")
    return None


def _option(info: FieldInfo) -> Option | None:
    """The field's `Option`, if it has one."""
    return next((m for m in info.metadata if isinstance(m, Option)), None)


def _nested(info: FieldInfo) -> type[BaseModel] | None:
    """The model class of a nested group, if the field is one."""
    kind = info.annotation
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _without_none(kind: Any) -> Any:
    """`X | None` -> X."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        rest = [k for k in typing.get_args(kind) if k is not type(None)]
        return rest[0] if len(rest) == 1 else kind
    return kind
