import math

import pandas as pd
import pytest

from lfm2_nas.report.build import compare_report
from lfm2_nas.report.compare import compare_studies, summary, verdict
from lfm2_nas.report.study import StudyData

OBJECTIVES = (("quality", "minimize"), ("decode_ms", "minimize"))


def _study(name, decode, quality=None, reference="h0", extra=()):
    """A study whose trial i measured layout h<i> at decode[i] ms (quality 1.0 - i/10 unless given);
    trial 0 is the seeded reference; ``extra`` adds (hash, decode, on_front) trials only this study has."""
    quality = quality or [1.0 - i / 10 for i in range(len(decode))]
    rows = [{"trial": i, "spec_hash": f"h{i}", "status": "measured", "seed": "lfm2-x" if i == 0 else "",
             "pattern": f"C{'A' * i}", "kv_heads": 2, "ffn_dim": 64, "params": 1000, "quality": q,
             "decode_ms": d, "prefill_ms": 2 * d, "peak_bytes": 2**20, "feasible": True, "on_front": False}
            for i, (d, q) in enumerate(zip(decode, quality))]
    rows[0]["spec_hash"] = reference
    for j, (h, d, front) in enumerate(extra, start=len(rows)):
        rows.append({**rows[-1], "trial": j, "spec_hash": h, "pattern": "CCCC", "decode_ms": d, "on_front": front})
    rows.append({**rows[-1], "trial": len(rows), "status": "screened", "spec_hash": "screened",
                 "decode_ms": None, "quality": None, "on_front": False})
    seeds = ({"seed": "lfm2-x", "trial": 0, "status": "measured", "pattern": "C", "placement": ""},)
    return StudyData(name, OBJECTIVES, pd.DataFrame(rows), seeds, (f"hw-{name}",), "2026-11-29")


def test_the_same_ordering_gives_the_same_winners_and_full_rank_agreement():
    # quality improves with i, decode gets slower: every layout is a trade-off, all non-dominated
    a = _study("a", [10.0, 11.0, 12.0, 13.0])
    b = _study("b", [3.0, 3.5, 4.0, 4.5])  # another runtime: 3x faster, same order
    comparison = compare_studies(a, b)
    assert comparison.same_winners
    assert comparison.rank_agreement["decode_ms"] == pytest.approx(1.0)
    assert comparison.rows.set_index("spec_hash").loc["h2", "decode_ms_vs_ref_b"] == pytest.approx(4.0 / 3.0)
    assert "the same layouts win" in verdict(comparison)


def test_a_reversed_ordering_changes_the_winners():
    a = _study("a", [10.0, 11.0, 12.0, 13.0])
    b = _study("b", [4.5, 4.0, 3.5, 3.0])  # the best-quality layout is now also the fastest: it dominates
    comparison = compare_studies(a, b)
    flags = comparison.rows.set_index("spec_hash")
    assert flags["front_common_a"].all()
    assert list(flags.index[flags["front_common_b"]]) == ["h3"]
    assert comparison.rank_agreement["decode_ms"] == pytest.approx(-1.0)
    assert not comparison.same_winners
    assert summary(comparison)["front_common_b"] == ["CAAA kv2 ffn64"]


def test_only_common_measured_layouts_are_compared_and_own_fronts_listed():
    a = _study("a", [10.0, 11.0, 12.0], extra=[("only-a", 5.0, True)])
    b = _study("b", [3.0, 3.5, 4.0], extra=[("only-b", 1.0, True)])
    comparison = compare_studies(a, b)
    assert set(comparison.rows["spec_hash"]) == {"h0", "h1", "h2"}  # screened and one-sided trials left out
    assert list(comparison.own_front_only[0]["spec_hash"]) == ["only-a"]
    assert list(comparison.own_front_only[1]["spec_hash"]) == ["only-b"]


def test_a_layout_without_quality_is_shown_but_never_on_a_front():
    a = _study("a", [10.0, 11.0, 12.0], quality=[1.0, math.nan, 0.8])
    comparison = compare_studies(a, _study("b", [3.0, 3.5, 4.0]))
    flags = comparison.rows.set_index("spec_hash")
    assert not flags.loc["h1", "front_common_a"] and flags.loc["h1", "front_common_b"]


def test_studies_seeded_with_other_references_are_refused():
    with pytest.raises(ValueError, match="different reference layouts"):
        compare_studies(_study("a", [1.0, 2.0]), _study("b", [1.0, 2.0], reference="other"))


def test_the_report_has_the_verdict_the_plot_and_the_table(tmp_path):
    comparison = compare_studies(_study("a", [10.0, 11.0, 12.0]), _study("b", [4.5, 4.0, 3.5]))
    written = compare_report(comparison, tmp_path / "cmp")
    text = written.report.read_text()
    assert verdict(comparison) in text and "hw-a" in text and "hw-b" in text
    assert (tmp_path / "cmp" / "agreement.png").stat().st_size > 0
    table = pd.read_csv(tmp_path / "cmp" / "common.csv")
    assert len(table) == 3 and "decode_ms_vs_ref_b" in table.columns
