"""`layerprobe tasks`: list every task with its group, classes, split sizes and whether its data is found."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tasks",
        help="list tasks, their splits and whether their data is found",
        description="List every registered task: group, number of classes, split sizes where the "
        "data is found, and `found` or `missing: <what was looked for>`.",
    )
    parser.add_argument(
        "patterns",
        nargs="*",
        metavar="PATTERN",
        help="only tasks matching these shell patterns, e.g. 'vtab1k/*'; folder:PATH checks a folder",
    )
    parser.add_argument(
        "--data-root", metavar="DIR", help="where the datasets live (default: $LAYERPROBE_DATA)"
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--builtin",
        action="store_const",
        const=True,
        dest="builtin",
        help="only the built-in offline suite",
    )
    kind.add_argument(
        "--real",
        action="store_const",
        const=False,
        dest="builtin",
        help="only tasks read from the data root",
    )
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="also show each task's description and split convention",
    )
    parser.set_defaults(run=run, builtin=None)


def run(args: argparse.Namespace) -> int:
    from layerprobe.tasks.summary import format_table, summarize_tasks  # numpy, PIL: only here

    rows = summarize_tasks(args.data_root, args.patterns, args.builtin)
    if args.format == "json":
        print(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        print(format_table(rows, args.data_root, verbose=args.verbose))
    return 0
