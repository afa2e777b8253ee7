"""The command line: global flags work before or after the subcommand, and every flag the
README and docs show on a `factorial-ws` command line exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from factorial_ws.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# `factorial-ws ...` up to the end of its code span, table cell, comment or line.
COMMAND_LINE = re.compile(r"factorial-ws((?: [^`|#\n]*)?)")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def documented_command_lines() -> list[tuple[str, str]]:
    """(where, the words after `factorial-ws`) for each command line the documents show."""
    found = []
    for path in DOCUMENTS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in COMMAND_LINE.finditer(line):
                found.append((f"{path.name}:{number}", match.group(1)))
    return found


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--log-format", "json", "--log-level", "debug"],
        ["--log-format", "json", "--log-level", "debug", "serve"],
        ["--log-format", "json", "serve", "--log-level", "debug"],
    ],
)
def test_log_flags_work_before_and_after_the_subcommand(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.command, args.log_format, args.log_level) == ("serve", "json", "debug")


@pytest.mark.parametrize("command", ["up", "serve", "worker", "client", "bench"])
def test_every_subcommand_takes_the_log_flags(command: str) -> None:
    args = build_parser().parse_args([command, "--log-level", "DEBUG", "--log-format", "text"])
    assert (args.log_level, args.log_format) == ("DEBUG", "text")


def test_log_flags_default_to_unset_so_the_environment_decides() -> None:
    args = build_parser().parse_args(["up"])
    assert args.log_level is None and args.log_format is None


def test_every_flag_the_docs_show_on_a_command_line_exists() -> None:
    parser = build_parser()
    commands = subcommands(parser)
    checked = 0
    for where, words in documented_command_lines():
        command = None
        for word in words.split():
            word = word.strip("[]").removesuffix("...").split("=")[0]
            if word in commands and command is None:
                command = word
            elif word.startswith("-") and len(word) > 1:
                known = options(parser) | (options(commands[command]) if command else set())
                assert word in known, f"{where}: `factorial-ws{words}` shows {word}, which does not exist"
                checked += 1
    assert checked >= 15  # the README's command table alone shows that many
