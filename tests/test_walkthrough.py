"""README's Walkthrough: every command it shows exists with the options it uses, and every plot it
embeds is committed."""

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lfm2_nas.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    assert "## Walkthrough" in text
    return text.split("## Walkthrough", 1)[1].split("\n## ", 1)[0]


def _commands() -> list[list[str]]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", _walkthrough(), flags=re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("lfm2-nas "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_walkthrough_shows_the_newcomer_path():
    joined = [" ".join(c[:2]) for c in _commands()]
    for expected in ("variants list", "profile lfm2-350m", "search run", "report study", "report sweep", "report layout"):
        assert any(j.startswith(expected) for j in joined), expected


@pytest.mark.parametrize("args", _commands(), ids=lambda a: " ".join(a[:3]))
def test_walkthrough_command_parses(args):
    # --help after the arguments: click rejects an unknown command or option before printing help
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output


def test_walkthrough_images_are_committed():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", _walkthrough())
    assert images
    for path in images:
        assert (ROOT / path).is_file(), path
