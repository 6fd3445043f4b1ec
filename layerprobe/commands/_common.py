"""Argument helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import ast


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def parse_key_value(text: str) -> tuple[str, object]:
    """Parse ``key=value``; the value as a Python literal when it is one, else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r} (no key)")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


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
