"""Where results go by default: one experiments root, and one rule for where a study is stored."""

from pathlib import Path

from lfm2_nas.paths import EXPERIMENTS_ENV, experiments_root
from lfm2_nas.search.storage import study_dir, study_location


def test_experiments_root_defaults_and_moves(monkeypatch, tmp_path):
    monkeypatch.delenv(EXPERIMENTS_ENV, raising=False)
    assert experiments_root() == Path("experiments")
    assert study_dir("s") == Path("experiments") / "s"
    monkeypatch.setenv(EXPERIMENTS_ENV, str(tmp_path))
    assert study_dir("s") == tmp_path / "s"
    assert study_dir("s", root="elsewhere") == Path("elsewhere") / "s"  # a given root always wins


def test_study_location_takes_the_first_storage_given(monkeypatch):
    monkeypatch.delenv(EXPERIMENTS_ENV, raising=False)
    assert study_location("s") == str(Path("experiments") / "s" / "journal.log")
    assert study_location("s", None, "sqlite:///file.db") == "sqlite:///file.db"
    assert study_location("s", "flag.log", "sqlite:///file.db") == "flag.log"
    assert study_location("s", None, None, root="r") == str(Path("r") / "s" / "journal.log")
