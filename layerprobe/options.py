"""Config fields that are also command-line options.

Each stage's typed config (a dataclass: ``ExtractConfig``, ``ProbeConfig``, ``PretrainConfig``,
``FinetuneConfig``, ``AnalysisConfig``) is the one home of its defaults, choices and help text.
A field made with :func:`option` carries its command-line spelling in its metadata;
:func:`add_options` turns a config's fields into argparse options and :func:`from_args` builds
the config back from the parsed arguments. A default, a choice list or a help line is written
once, and the CLI, the Python API and job files build the same object.

The parser's defaults are ``argparse.SUPPRESS``: an option the user did not give is absent from
the namespace, so the config's own default applies, never a second copy of it. ``--help`` shows
the config's default, read from the field.

Example
-------
>>> from dataclasses import dataclass
>>> @dataclass
... class Config:
...     seeds: int = option(3, help="few-shot draws per shot count", type=int, metavar="N")
>>> parser = argparse.ArgumentParser()
>>> add_options(parser, Config)
>>> from_args(Config, parser.parse_args([]))
Config(seeds=3)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, Field, field, fields, is_dataclass
from typing import Any

from layerprobe.errors import ConfigError, did_you_mean

KEY = "layerprobe.option"


def option(
    default: Any = MISSING,
    *,
    help: str,
    type: Callable[[str], Any] | None = None,
    choices: Sequence[str] | None = None,
    metavar: str | None = None,
    flag: str | None = None,
    short: str | None = None,
    default_factory: Callable[[], Any] | Any = MISSING,
    show_default: str | None = None,
    cli: bool = True,
    action: str | None = None,
    nargs: str | None = None,
) -> Any:
    """A dataclass field that also describes its command-line option.

    Parameters
    ----------
    default, default_factory : the field's default (as :func:`dataclasses.field`).
    help : one line for ``--help``; the default and the choices are appended to it.
    type : parses the command-line text (argparse ``type``); None = text. A bool field with a
        False default is a switch (``store_true``).
    choices : the allowed values; the CLI and :func:`check_choices` enforce them.
    metavar, short : argparse's metavar and a short alias such as ``-q``.
    flag : the option's name; default ``--`` + the field name with ``_`` as ``-``.
    show_default : how ``--help`` shows the default (default: the value itself).
    cli : False for fields that only the Python API and job files set.
    action, nargs : argparse's ``action`` (``append``, ``extend``) and ``nargs`` for list fields
        given one item (or a few) per option.

    A field without a default is a required option.
    """
    meta = {
        "help": help,
        "type": type,
        "choices": tuple(choices) if choices is not None else None,
        "metavar": metavar,
        "flag": flag,
        "short": short,
        "show_default": show_default,
        "cli": cli,
        "action": action,
        "nargs": nargs,
    }
    return field(default=default, default_factory=default_factory, metadata={KEY: meta})


def option_fields(config: type | object) -> list[Field]:
    """The fields of the dataclass ``config`` made with :func:`option` (in declaration order)."""
    if not is_dataclass(config):
        raise TypeError(f"{config!r} is not a dataclass")
    return [f for f in fields(config) if KEY in f.metadata]


def flag_of(f: Field) -> str:
    """The command-line spelling of field ``f`` (``--batch-size`` for ``batch_size``)."""
    return f.metadata[KEY]["flag"] or "--" + f.name.replace("_", "-")


def field_default(f: Field) -> Any:
    """The default value of field ``f`` (a fresh one for ``default_factory`` fields)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def help_text(f: Field) -> str:
    """The ``--help`` line of field ``f``: its help, choices and default."""
    meta = f.metadata[KEY]
    text = meta["help"]
    if meta["choices"] and meta["metavar"] is not None:  # argparse lists them otherwise
        text += f"; one of {', '.join(meta['choices'])}"
    default = field_default(f)
    shown = meta["show_default"]
    if shown is None and default is not MISSING and default is not None and default is not False:
        shown = _shown(default)
    return f"{text} (default {shown})" if shown else text


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config: type,
    *,
    exclude: Iterable[str] = (),
    only: Iterable[str] | None = None,
) -> None:
    """Add one argparse option per :func:`option` field of the dataclass ``config``.

    Parameters
    ----------
    parser : the parser (or argument group) to add to.
    config : the config class.
    exclude : field names the command spells itself (or does not offer).
    only : if given, just these field names.
    """
    exclude = set(exclude)
    only = set(only) if only is not None else None
    for f in option_fields(config):
        meta = f.metadata[KEY]
        if not meta["cli"] or f.name in exclude or (only is not None and f.name not in only):
            continue
        names = [flag_of(f)] + ([meta["short"]] if meta["short"] else [])
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        if field_default(f) is MISSING:
            kwargs["required"] = True
        if f.type in (bool, "bool") and field_default(f) is False:
            kwargs["action"] = "store_true"
        else:
            for key in ("action", "nargs"):
                if meta[key] is not None:
                    kwargs[key] = meta[key]
            if meta["type"] is not None:
                kwargs["type"] = meta["type"]
            if meta["choices"] is not None:
                kwargs["choices"] = meta["choices"]
            if meta["metavar"] is not None:
                kwargs["metavar"] = meta["metavar"]
        kwargs["help"] = help_text(f)
        parser.add_argument(*names, **kwargs)


def given(
    config: type, args: argparse.Namespace, *, only: Iterable[str] | None = None
) -> dict[str, Any]:
    """The values of ``config``'s fields that the command line gave (absent ones are left out;
    ``only``: just these field names, for a command that offers a few fields of ``config``)."""
    names = set(only) if only is not None else None
    return {
        f.name: getattr(args, f.name)
        for f in option_fields(config)
        if hasattr(args, f.name) and (names is None or f.name in names)
    }


def from_args(
    config: type, args: argparse.Namespace, *, only: Iterable[str] | None = None, **fixed: Any
) -> Any:
    """Build ``config`` from parsed arguments: the options given, then ``fixed``, else defaults
    (``only`` as in :func:`given`)."""
    return config(**(given(config, args, only=only) | fixed))


def whole_number(minimum: int | None = None, maximum: int | None = None):
    """An argparse type: a whole number in [minimum, maximum] (each bound optional).

    Its ``__name__`` is what argparse prints for a value it cannot convert, so it is readable
    ("whole number"), never an internal function name.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"expected a whole number <= {maximum}, got {text!r}")
        return value

    parse.__name__ = "whole number"
    return parse


def parse_int_list(text: str) -> list[int]:
    """Parse ``1,5,10,25`` into a list of ints."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from err


def parse_float_list(text: str) -> list[float]:
    """Parse ``0.1,1,2**10`` into floats (``2**k`` and ``2^k`` allowed)."""
    out = []
    for t in text.split(","):
        t = t.strip()
        if not t:
            continue
        t = t.replace("^", "**")  # 2^k is spelt 2**k
        try:
            if "**" in t:
                base, exp = t.split("**")
                value = float(base) ** float(exp)
            else:
                value = float(t)
            if isinstance(value, complex):  # (-2)**0.5
                raise ValueError(t)
            out.append(value)
        except (ValueError, OverflowError) as err:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers, got {text!r}"
            ) from err
    return out


def check_choices(config: object) -> None:
    """Raise :class:`ConfigError` if a field of ``config`` with choices holds another value.

    Configs call this from ``__post_init__``, so the Python API and job files are held to the
    same choices as the CLI. Each item of a list field (a repeatable option) is checked.
    """
    for f in option_fields(config):
        allowed = f.metadata[KEY]["choices"]
        values = getattr(config, f.name)
        if allowed is None or values is None:
            continue
        for value in values if isinstance(values, list | tuple) else [values]:
            if value in allowed:
                continue
            raise ConfigError(
                f"{f.name.replace('_', ' ')} {value!r} is not one of {', '.join(allowed)}; "
                f"give one of those ({flag_of(f)}).{did_you_mean(str(value), allowed)}"
            )
