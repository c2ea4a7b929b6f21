"""README's Layouts example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_layouts_python_example_runs(tmp_path, monkeypatch):
    section = README.read_text().split("## Layouts", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(tmp_path)  # it saves a checkpoint into ./ckpt
    namespace: dict = {}
    exec(compile(code, "README.md#Layouts", "exec"), namespace)
    assert namespace["out"].shape == (1, 19)
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
