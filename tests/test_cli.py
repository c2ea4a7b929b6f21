"""The command line: ``variants list|show`` content, ``build`` output, and one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import Lfm2ForCausalLM
from typer.testing import CliRunner

from lfm2_nas import cost
from lfm2_nas.checkpoint import load_pretrained
from lfm2_nas.cli import app
from lfm2_nas.registry import VARIANTS, get_spec

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _json(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_variants_list_json_has_every_variant_with_its_costs():
    rows = _json(["variants", "list", "--format", "json"])
    assert [r["name"] for r in rows] == list(VARIANTS)
    by_name = {r["name"]: r for r in rows}
    row = by_name["lfm2-350m"]
    assert row["params"] == 354_483_968 and row["non_embedding_params"] == 287_375_104
    assert row["pattern"] == "CCACCACCACACACAC" and row["ffn_dim"] == 4608
    assert row["weight_bytes"] == 354_483_968 * 4 and row["dtype"] == "float32"
    assert row["kv_bytes_per_token"] == 2 * 6 * 8 * 64 * 4
    assert row["conv_state_bytes"] == 10 * 1024 * 2 * 4
    assert by_name["lfm2-2.6b"]["params"] == 2_569_272_320
    assert set(by_name["lfm2-700m-all-attn"]["pattern"]) == {"A"}


def test_variants_show_json_bf16_and_custom_pattern():
    row = _json(["variants", "show", "lfm2-1.2b:CCAACCAACCAACCAA", "--format", "json", "--dtype", "bf16"])
    spec = get_spec("lfm2-1.2b", pattern="CCAACCAACCAACCAA")
    assert row["pattern"] == "CCAACCAACCAACCAA" and row["attention_layers"] == 8
    assert row["dtype"] == "bfloat16" and row["weight_bytes"] == cost.weight_bytes(spec, "bf16")
    assert row["kv_bytes_per_token"] == cost.kv_bytes_per_token(spec, "bf16") == 16 * 1024
    assert row["spec"]["pattern"] == "CCAACCAACCAACCAA" and row["spec"]["hidden_size"] == 2048


def test_variants_tables_for_people():
    listing = runner.invoke(app, ["variants", "list"])
    assert listing.exit_code == 0 and "lfm2-350m" in listing.stdout and "354.5M" in listing.stdout
    shown = runner.invoke(app, ["variants", "show", "lfm2-350m"])
    assert "354,483,968" in shown.stdout and "KiB" in shown.stdout


def test_build_writes_a_folder_transformers_loads(tmp_path):
    out = tmp_path / "tiny"
    result = runner.invoke(app, ["build", "lfm2-tiny", "--out", str(out), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert f"{cost.param_count(get_spec('lfm2-tiny')):,} parameters" in result.stdout
    ours = load_pretrained(out)
    reference = Lfm2ForCausalLM.from_pretrained(out).eval()
    prompt = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.inference_mode():
        assert (ours(prompt) - reference(prompt).logits).abs().max() <= 1e-5


def test_build_from_a_config_path_and_bf16(tmp_path):
    runner.invoke(app, ["build", "lfm2-tiny:CACA", "--out", str(tmp_path / "a")])
    result = runner.invoke(app, ["build", str(tmp_path / "a" / "config.json"), "--out", str(tmp_path / "b"),
                                 "--dtype", "bf16"])
    assert result.exit_code == 0, result.output
    again = load_pretrained(tmp_path / "b", dtype=torch.bfloat16)
    assert again.spec.pattern == "CACA"
    assert json.loads((tmp_path / "b" / "config.json").read_text())["dtype"] == "bfloat16"


def _cli(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LFM2_NAS_DEBUG", None)
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "malformed.json").write_text("{not json")
    (folder / "invalid.json").write_text(json.dumps({**get_spec("lfm2-tiny").to_dict(), "hidden_size": 66}))
    (folder / "other").mkdir()
    (folder / "other" / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    (folder / "taken").write_text("a file where the output folder should go")
    return folder


@pytest.mark.parametrize(
    "args, message",
    [
        (["variants", "show", "lfm2-9b"], "is not a variant name"),
        (["variants", "show", "{dir}/missing/config.json"], "is not a variant name, NAME:PATTERN, an existing config"),
        (["variants", "show", "{dir}/malformed.json"], "is not valid JSON"),
        (["variants", "show", "{dir}/invalid.json"], "hidden_size 66 is not divisible by num_heads"),
        (["variants", "show", "{dir}/other"], "model_type is 'llama'"),
        (["variants", "show", "lfm2-350m:CCXA"], "unknown letters"),
        (["variants", "list", "--dtype", "int3"], "unknown dtype"),
        (["build", "lfm2-tiny", "--out", "{dir}/t", "--dtype", "int8"], "unknown dtype"),
        (["build", "lfm2-tiny", "--out", "{dir}/taken"], "exists and is not a folder"),
    ],
    ids=["unknown-name", "missing-path", "malformed-json", "invalid-spec", "other-model-type", "bad-pattern",
         "bad-dtype", "bad-build-dtype", "out-is-a-file"],
)
def test_bad_input_gives_one_error_line_and_exit_2(bad_files, args, message):
    result = _cli(*[a.format(dir=bad_files) for a in args])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_variants_list_does_not_import_torch():
    code = (
        "import sys; from lfm2_nas.cli import app; from typer.testing import CliRunner;"
        "r = CliRunner().invoke(app, ['variants', 'list', '--format', 'json']); assert r.exit_code == 0, r.output;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
