"""The README and docs/ as a user reads them: every `dlpipe` and `make` command they show exists with the options
they name, no link points to a file the repository lacks, and the configuration reference lists every key."""
from __future__ import annotations

import dataclasses
import re
import shlex
import typing
from pathlib import Path

import pytest

from dlpipe.jobs.cli import build_parser
from dlpipe.pipelines.config.schema import Config

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def shell_lines(page: Path) -> list[str]:
    """The lines of a page's shell examples (indented blocks and fenced blocks other than YAML) that start with
    ``dlpipe`` or ``make``, comments and continuation lines joined; what a command prints (``dlpipe train: ...``)
    is not a command."""
    lines, fenced, kind = [], False, ""
    text = page.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("```"):
            fenced, kind = not fenced, line[3:].strip()
            continue
        in_block = (fenced and kind in ("", "sh", "bash", "shell")) or (not fenced and line.startswith("    "))
        command = line.strip()
        if in_block and re.match(r"^(dlpipe|make)( |$)", command) and not re.match(r"^dlpipe \S+:", command):
            lines.append(command.split("  #")[0].split(" # ")[0].strip())
    return lines


COMMANDS = [(page.relative_to(REPO), line) for page in PAGES for line in shell_lines(page)]


def subcommand_options(name: str) -> set[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    assert name in commands.choices, f"dlpipe has no command {name!r}"
    return {option for action in commands.choices[name]._actions for option in action.option_strings}


def test_the_pages_show_commands_at_all():
    pages = {page for page, _ in COMMANDS}
    assert Path("README.md") in pages and len(COMMANDS) > 20


@pytest.mark.parametrize("page, line", COMMANDS, ids=[f"{p}:{line}" for p, line in COMMANDS])
def test_every_command_shown_exists_with_its_options(page, line):
    words = shlex.split(line.replace("[", " ").replace("]", " ").replace("|", " "))
    if words[0] == "make":
        targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))
        for target in (w for w in words[1:] if not w.startswith("-") and "=" not in w):
            assert target in targets, f"{page}: `{line}`: the Makefile has no target {target!r}"
        return
    options = subcommand_options(words[1])
    for word in words[2:]:
        if word.startswith("--"):
            assert word.split("=")[0] in options, f"{page}: `{line}`: dlpipe {words[1]} has no option {word}"


def test_every_link_to_a_file_points_into_the_repository():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links to {target}, which is missing"


def config_keys(cls=Config, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name == "source_files":
            continue
        hint = hints[field.name]
        nested = [h for h in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(h)]
        if nested and typing.get_origin(hint) is dict:  # a section per name: generate.shift.<column>.scale
            keys += config_keys(nested[0], f"{prefix}{field.name}.<column>.")
        elif nested and nested[0].__name__ != "TableSource":
            keys += config_keys(nested[0], f"{prefix}{field.name}.")
        else:
            keys.append(f"{prefix}{field.name}")
    return keys


def test_the_configuration_reference_lists_every_key():
    reference = (REPO / "docs" / "configuration.md").read_text()
    missing = [key for key in config_keys() if f"| `{key}` |" not in reference]
    assert not missing, f"docs/configuration.md does not list {missing}"
