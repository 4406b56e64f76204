"""`iotjobs-admin`: every command in one place, each with a --help that says what it does."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from services.admin import parser

# Each subcommand, and words its --help must hold.
COMMANDS = {
    "migrate": ["migrations"],
    "topics": ["Create the Kafka topics", "--list", "end offsets"],
    "rebuild": ["replay the log"],
    "dead-letters": ["parked command"],
    "history": ["transition", "cause", "THING", "JOB", "--json"],
    "lag": ["projector", "end offset", "seconds", "--json"],
    "clock": ["test clock", "--advance"],
    "credentials": ["certificate", "password", "access-key"],
}


def _admin(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.admin", *arguments], capture_output=True, text=True, timeout=60, check=False
    )


def test_every_command_is_checked_here() -> None:
    (commands,) = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == set(COMMANDS)


def test_the_top_level_help_lists_every_command() -> None:
    shown = _admin("--help")
    assert shown.returncode == 0, shown.stderr
    for command in COMMANDS:
        assert f"    {command}" in shown.stdout, command


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_a_help_that_says_what_it_does(command: str) -> None:
    shown = _admin(command, "--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"usage: iotjobs-admin {command}")
    text = " ".join(shown.stdout.split())
    for words in COMMANDS[command]:
        assert words.lower() in text.lower(), (command, words)


def test_history_checks_its_names_as_the_api_does_before_touching_anything() -> None:
    refused = _admin("history", "a thing", "job1")
    assert refused.returncode == 2
    assert "thingName 'a thing' does not match pattern" in refused.stderr
