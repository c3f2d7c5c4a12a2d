"""--help of the scripts without a test file of their own: every flag explains itself, in its own words."""

from __future__ import annotations

import importlib

import pytest
from conftest import assert_every_flag_has_its_own_help, script_parser


@pytest.mark.parametrize("script", ["03_generate_rnn_data.py", "05_train_controller.py", "06_test_controller.py",
                                    "07_iterative_training.py", "play.py", "run_all.py"])
def test_help_explains_every_flag(script):
    assert_every_flag_has_its_own_help(script_parser(script))


def test_analyze_help_explains_every_subcommand_and_flag():
    parser, subcommands = importlib.import_module("analyze").build_parser()
    assert_every_flag_has_its_own_help(parser)
    assert set(importlib.import_module("analyze").ANALYSES) < set(subcommands)
    for name, sub in subcommands.items():
        assert_every_flag_has_its_own_help(sub, f"analyze.py {name}: ")
