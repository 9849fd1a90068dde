"""bench/cli_help.py times every sub-command's --help (the list stays in sync with the parser)."""
import argparse

from bench import cli_help
from pip_adapter.cli import build_parser


def test_every_subcommand_is_timed_and_a_run_takes_time(tmp_path):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(cli_help.COMMANDS) == set(sub.choices)
    runs = cli_help.cases(baseline=str(tmp_path))
    assert {f"pip-adapter {c} --help" for c in sub.choices} <= set(runs)
    assert runs["baseline: pip-adapter --help"][0] == str(tmp_path)
    assert cli_help.time_once(*runs["python (interpreter only)"]) > 0
