"""The README's promises that a test can keep honest."""

import re
import tomllib

from conftest import ROOT
from search.cli import build_parser
from search.config import from_mapping


def readme() -> str:
    return (ROOT / "README.md").read_text()


def fidelity() -> str:
    """The dated measurements that the README's "Proxy fidelity" summarises."""
    return (ROOT / "benchmarks" / "FIDELITY.md").read_text()


def toml_blocks(document: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", document, flags=re.S)


def test_readme_settings_files_are_valid_configs() -> None:
    sample, *others = toml_blocks(readme())
    measured = toml_blocks(fidelity())
    assert measured, "benchmarks/FIDELITY.md's settings files are no longer found"
    for block in others + measured:  # the settings files of measurements
        from_mapping(tomllib.loads(block)).validate()
    config = from_mapping(tomllib.loads(sample)).validate()
    assert config.space.frozen_layers == (2, 3) and config.search.budget_s == 600
    assert config.search.backend == "local" and config.ray.address == "auto" and config.fidelity.candidates == 24


def test_readme_flags_exist_on_the_subcommand_they_are_given_to() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    known = {name: {flag for action in parser._actions for flag in action.option_strings}
             for name, parser in commands.items()}
    checked = set()
    for document in (readme(), fidelity(), (ROOT / "deploy" / "README.md").read_text()):
        for line in re.findall(r"search (?:[a-z]+)[^\n`]*", document):
            for part in line.split(" -- "):  # submit ... -- run ...: the part after -- is its own command
                words = part.replace("search ", "", 1).split()
                if not words or words[0] not in commands:
                    continue
                flags = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", part))
                assert flags <= known[words[0]], (words[0], flags - known[words[0]])
                checked.add(words[0])
    assert {"run", "train", "validate", "inspect", "export", "slim", "simplify", "submit", "jobs", "ui"} <= checked


def test_quick_start_commands_are_make_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "make run" in readme() and "make test" in readme()
    assert re.search(r"^run: install\n\t\$\(BIN\)/search run --budget \$\(BUDGET\)", makefile, flags=re.M)
    assert "BUDGET ?= 3m" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
