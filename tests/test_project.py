"""The project's promises about itself: README's commands and CI stay in step."""

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_opens_with_install_run_and_install_test_commands():
    run, test = _readme_commands()
    assert "pip install" in run and "lfm2-nas" in run
    assert "pip install" in test and "pytest" in test


def test_ci_runs_the_readme_test_command_verbatim():
    _, test = _readme_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test in ci_lines


def test_tests_skip_only_for_packages_the_dev_extra_installs():
    """CI installs `.[dev]`: a test may skip for a missing package only if that extra brings it, so no
    test is silently skipped in CI; the project's own packages are imported plainly, never skipped."""
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    dev_modules = {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower().replace("-", "_") for r in dev}
    skipped = {m for f in (ROOT / "tests").glob("*.py")
               for m in re.findall(r"importorskip\(\s*[\"']([\w.]+)", f.read_text())}
    assert skipped, "the pattern finds nothing: update it"
    own = {m for m in skipped if m.split(".")[0] == "lfm2_nas"}
    assert not own, f"import the project's own packages plainly: {sorted(own)}"
    skipped -= {"torch"}  # test_profiler_gpu.py: skips without a GPU, whatever is installed
    assert skipped <= dev_modules, f"add to the dev extra (or import plainly): {sorted(skipped - dev_modules)}"
