"""What `pip install .` delivers: a wheel that carries its data files, and modules that stay torch-free."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TORCH_FREE = ("lfm2_nas.spec", "lfm2_nas.cost", "lfm2_nas.registry", "lfm2_nas.search.config", "lfm2_nas.io")


def test_the_torch_free_modules_do_not_import_torch():
    code = f"import sys; import {', '.join(TORCH_FREE)}; print(sorted(m for m in sys.modules if m.startswith('torch')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--no-deps", "--no-index", "--no-build-isolation",
                             "--disable-pip-version-check", "--quiet"],
                            cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_built_wheel_loads_the_default_search(tmp_path):
    """A wheel (not an editable install, which reads the checkout) holds search/default.toml, so
    `lfm2-nas search run` without a file works after `pip install .`."""
    source = tmp_path / "source"  # a copy, so the build leaves no build/ or egg-info in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "lfm2_nas", source / "lfm2_nas", ignore=shutil.ignore_patterns("__pycache__"))
    _pip("wheel", str(source), "-w", str(tmp_path / "dist"), cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("lfm2_nas-*.whl")
    assert "lfm2_nas/search/default.toml" in zipfile.ZipFile(wheel).namelist()

    _pip("install", "--target", str(tmp_path / "site"), str(wheel), cwd=tmp_path)
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from lfm2_nas.search import default_search_file, load_config;"
        "import lfm2_nas; config = load_config(default_search_file());"
        "print(json.dumps({'package': lfm2_nas.__file__, 'file': str(default_search_file()),"
        " 'study': config.study.name}))"
    )
    # -I: neither the checkout (cwd) nor PYTHONPATH on the path; the venv's dependencies still are
    result = subprocess.run([sys.executable, "-I", "-c", code, str(tmp_path / "site")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    site = str(tmp_path / "site")
    assert loaded["package"].startswith(site) and loaded["file"].startswith(site)  # the wheel's, not the checkout's
    assert loaded["study"]
