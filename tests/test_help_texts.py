"""Every command an admin or maintainer runs explains itself: a description, and a help text on every
option (``manage.py <command> --help``, ``python -m ml.<module> --help``,
``python benchmarks/<file> --help``)."""

import argparse
import importlib
import runpy
import sys
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class

ROOT = Path(__file__).resolve().parents[1]
OUR_APPS = ("cases", "segmentation", "recommender")
# Every ml module with a command line (found, so a new one cannot be left out).
CLI_MODULES = sorted(
    f"ml.{p.stem}" for p in (ROOT / "ml").glob("*.py") if "argparse.ArgumentParser(" in p.read_text()
)
BENCHMARKS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if "argparse" in p.read_text())


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    """The options without a help text; ``--help`` itself must render, so a stray ``%`` fails here."""
    assert parser.format_help()
    return [
        action.option_strings[0] if action.option_strings else action.dest
        for action in parser._actions
        if not action.help
    ]


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


def _parser_of(run, monkeypatch) -> argparse.ArgumentParser:
    """The parser a CLI's ``main`` builds, caught at its ``parse_args`` before it runs anything."""

    def capture(self, *args, **kwargs):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Captured) as caught:
        run()
    return caught.value.parser


OUR_COMMANDS = sorted(name for name, app in get_commands().items() if app in OUR_APPS)


def test_the_project_has_its_commands():
    assert {
        "train_model",
        "evaluate_segmentation",
        "sync_models",
        "import_figshare",
        "build_case_base",
        "tune_retrieval",
        "evaluate_retrieval",
    } <= set(OUR_COMMANDS)


@pytest.mark.parametrize("name", OUR_COMMANDS)
def test_every_management_command_has_a_help_text_on_itself_and_each_option(name):
    command = load_command_class(get_commands()[name], name)
    assert command.help.strip()
    assert _undocumented(command.create_parser("manage.py", name)) == []


@pytest.mark.parametrize("module", CLI_MODULES)
def test_every_ml_command_line_has_a_help_text_on_itself_and_each_option(module, monkeypatch):
    assert {"ml.train", "ml.calibrate", "ml.region_choice"} <= set(CLI_MODULES)  # the glob found them
    main = importlib.import_module(module).main
    parser = _parser_of(lambda: main(["--help"]), monkeypatch)
    assert parser.description and parser.description.strip()
    assert _undocumented(parser) == []


@pytest.mark.parametrize("filename", BENCHMARKS)
def test_every_benchmark_has_a_help_text_on_itself_and_each_option(filename, monkeypatch):
    assert BENCHMARKS  # the glob found the benchmarks
    monkeypatch.setattr(sys, "argv", [filename, "--help"])
    parser = _parser_of(
        lambda: runpy.run_path(str(ROOT / "benchmarks" / filename), run_name="__main__"), monkeypatch
    )
    assert parser.description and parser.description.strip()
    assert _undocumented(parser) == []
