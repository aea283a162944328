"""The README's promises that a test can keep honest."""

import re
import tomllib

from conftest import ROOT
from search.cli import build_parser
from search.config import from_mapping


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_settings_file_is_a_valid_config() -> None:
    (block,) = re.findall(r"```toml\n(.*?)```", readme(), flags=re.S)
    config = from_mapping(tomllib.loads(block)).validate()
    assert config.space.frozen_layers == (2, 3) and config.search.budget_s == 600


def test_readme_flags_exist() -> None:
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    known = {flag for action in run._actions for flag in action.option_strings} | {"--port", "--store"}
    used = set(re.findall(r"search (?:run|ui)[^\n`]*", readme()))
    flags = {flag for line in used for flag in re.findall(r"--[a-z-]+", line)}
    assert flags and flags <= known, flags - known


def test_quick_start_commands_are_make_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "make run" in readme() and "make test" in readme()
    assert re.search(r"^run: install\n\t\$\(BIN\)/search run --budget \$\(BUDGET\)", makefile, flags=re.M)
    assert "BUDGET ?= 3m" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
