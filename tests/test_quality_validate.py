import json

import pandas as pd
import pytest

from lfm2_nas.quality.corpus import load_corpus
from lfm2_nas.quality.result import QualityResult
from lfm2_nas.quality.store import QualityStore, result_key
from lfm2_nas.quality.validate import PANEL, plan, rank_correlations, run_validation, score_table
from lfm2_nas.registry import get_spec
from lfm2_nas.resolve import resolve_spec
from quality_helpers import TINY_TEXT, write_corpus

TINY_PANEL = {"hybrid": "lfm2-tiny", "all-conv": "lfm2-tiny:CCCC", "all-attn": "lfm2-tiny-all-attn", "short": "lfm2-tiny:CA"}


def _rows(columns: dict[str, list[float]], higher_is_better: dict[str, bool]) -> pd.DataFrame:
    rows = []
    for column, values in columns.items():
        for i, value in enumerate(values):
            sign = 1 if higher_is_better[column] else -1
            rows.append({"layout": f"l{i}", "column": column, "goodness": sign * value, "ok": True})
    return pd.DataFrame(rows)


def test_rank_correlation_compares_goodness_so_metric_direction_does_not_matter():
    rows = _rows(
        {"text@1x": [1.9, 1.8, 2.0, 1.7], "text@4x": [1.6, 1.5, 1.7, 1.4], "analytic": [1, 2, 0, 3], "other": [3, 2, 1, 0]},
        {"text@1x": False, "text@4x": False, "analytic": True, "other": True},
    )
    table = rank_correlations(rows).set_index(["a", "b"])
    assert table.loc[("text@1x", "text@4x"), "spearman"] == pytest.approx(1.0)
    assert table.loc[("text@1x", "analytic"), "kendall"] == pytest.approx(1.0)
    assert table.loc[("text@1x", "other"), "spearman"] == pytest.approx(-0.4)
    assert (table["n"] == 4).all()


def test_the_fixed_panel_is_diverse_and_resolvable():
    specs = [resolve_spec(text) for text in PANEL.values()]
    assert len(specs) >= 8
    assert {s.num_attention_layers for s in specs} >= {0, 1, 4, 6, 16}
    assert {s.num_layers for s in specs} >= {8, 16, 30}
    items = plan(PANEL, 1.0, 4.0)
    assert [i.column for i in items[:: len(PANEL)]] == ["analytic", "text@1x", "synthetic@1x", "text@4x"]
    one_budget = plan(PANEL, 0.1, None, synthetic=False)
    assert [i.column for i in one_budget[:: len(PANEL)]] == ["analytic", "text@0.1x"]


def test_store_skips_a_torn_line_and_keeps_the_next_record_whole(tmp_path):
    store = QualityStore(tmp_path / "r.jsonl")
    result = QualityResult(1.5, "val_bits_per_byte", False, 10, 0.1, 0)
    store.put("a", result)
    with open(tmp_path / "r.jsonl", "a") as f:
        f.write('{"key": "b", "resu')  # an interrupted write
    store = QualityStore(tmp_path / "r.jsonl")
    store.put("c", result)
    reloaded = QualityStore(tmp_path / "r.jsonl")
    assert reloaded.get("a") == result and reloaded.get("c") == result and reloaded.get("b") is None


def test_key_changes_with_everything_that_decides_a_result():
    spec = get_spec("lfm2-tiny")
    base = result_key(spec, "text", 1.0, 0, {"tokenizer": "byte"})
    assert base == result_key(spec, "text", 1.0, 0, {"tokenizer": "byte"})
    others = {result_key(spec.replace(pattern="CCCC"), "text", 1.0, 0, {"tokenizer": "byte"}),
              result_key(spec, "synthetic", 1.0, 0, {"tokenizer": "byte"}), result_key(spec, "text", 4.0, 0, {"tokenizer": "byte"}),
              result_key(spec, "text", 1.0, 1, {"tokenizer": "byte"}), result_key(spec, "text", 1.0, 0, {"tokenizer": "bpe"})}
    assert base not in others and len(others) == 5


def test_validation_runs_resumes_from_cache_and_stops_at_a_limit(tmp_path):
    options = {"text": {"corpus": load_corpus(write_corpus(tmp_path / "c")), "tokenizer": "byte", "config": TINY_TEXT,
                        "cache_dir": tmp_path}}
    store = QualityStore(tmp_path / "out" / "results.jsonl")
    partial = run_validation(store, TINY_PANEL, budget=0.5, synthetic=False, options=options, progress=False, limit=2)
    assert list(partial.column) == ["analytic"] * 4 + ["text@0.5x"] * 2
    seen = []
    rows = run_validation(QualityStore(store.path), TINY_PANEL, budget=0.5, synthetic=False, options=options,
                          progress=False, on_result=lambda item, result, cached: seen.append(cached))
    assert len(rows) == 12 and rows.ok.all()
    assert seen[:6] == [True] * 6 and seen[6:] == [False] * 6  # the finished ones came from the cache
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 12 and json.loads(lines[4])["tier"] == "text"
    table = score_table(rows)
    assert list(table.index) == list(TINY_PANEL) and {"text@0.5x", "text@2x", "text@2x s"} <= set(table.columns)
    correlations = rank_correlations(rows)
    assert set(zip(correlations.a, correlations.b)) == {("analytic", "text@0.5x"), ("analytic", "text@2x"), ("text@0.5x", "text@2x")}


def test_the_default_corpus_left_out_or_named_is_one_cache_key(tmp_path, monkeypatch):
    import lfm2_nas.quality.validate as validate

    corpora = []
    fake = QualityResult(1.5, "val_bits_per_byte", False, 10, 0.1, 0)
    monkeypatch.setattr(validate, "evaluate", lambda spec, tier, budget, seed, progress, **options:
                        corpora.append(options["corpus"]) or fake if tier == "text" else fake)
    store = QualityStore(tmp_path / "results.jsonl")
    panel = dict(list(TINY_PANEL.items())[:3])
    named = {"text": {"corpus": load_corpus(None)}}
    run_validation(store, panel, budget=0.5, synthetic=False, options=named, progress=False)
    assert len(corpora) == 6 and all(c.name == "sotu" for c in corpora)
    seen = []
    run_validation(store, panel, budget=0.5, synthetic=False, progress=False,
                   on_result=lambda item, result, cached: seen.append(cached))
    assert seen[3:] == [True] * 6 and len(corpora) == 6  # the same text evaluations: nothing trained again
