import pandas as pd
import pytest

from lfm2_nas.report.front import hypervolume
from lfm2_nas.registry import get_spec
from lfm2_nas.report.study import StudyData, front_layouts, hypervolume_history, pareto_points


def _study(quality_direction="maximize"):
    # trial: quality, decode_ms, status, feasible (made-up values)
    rows = [
        (0, "lfm2-x", 0.50, 10.0, "measured", True),
        (1, "lfm2-x-all-attn", 0.55, 14.0, "measured", True),
        (2, "", 0.40, 8.0, "measured", True),
        (3, "", 0.45, 12.0, "measured", True),   # dominated by trial 0 (if higher quality is better)
        (4, "", 0.90, 5.0, "infeasible", False),  # over a limit: never on a front
        (5, "", None, None, "screened", False),
    ]
    frame = pd.DataFrame([{
        "trial": t, "seed": s, "pattern": "CA", "params": 1000, "quality": q, "decode_ms": d, "prefill_ms": d,
        "peak_bytes": 2**20 * (t + 1), "status": st, "feasible": f, "on_front": st == "measured" and t != 3,
    } for t, s, q, d, st, f in rows])
    specs = {t: get_spec("lfm2-tiny") for t in range(6)}
    return StudyData("s", (("quality", quality_direction), ("decode_ms", "minimize")), frame, (), ("hw",), "2026-01-02",
                     specs)


def test_pareto_points_keep_measured_trials_and_find_the_plotted_front():
    points = pareto_points(_study()).set_index("trial")
    assert list(points.index) == [0, 1, 2, 3, 4]
    assert points["on_plot_front"].to_dict() == {0: True, 1: True, 2: True, 3: False, 4: False}
    assert points.loc[0, "seed"] == "lfm2-x" and not points.loc[4, "feasible"]


def test_pareto_points_follow_the_quality_direction():
    points = pareto_points(_study("minimize")).set_index("trial")  # e.g. bits per byte: lower is better
    assert points["on_plot_front"].to_dict() == {0: False, 1: False, 2: True, 3: False, 4: False}


def test_pareto_points_reject_unknown_columns():
    with pytest.raises(ValueError, match="unknown column 'latency'"):
        pareto_points(_study(), x="latency")


def test_front_layouts_are_the_seeds_then_the_best_front_trials():
    labels = [label for label, _ in front_layouts(_study(), most=1)]
    assert labels == ["trial 0 (lfm2-x)", "trial 1 (lfm2-x-all-attn)", "trial 2 (front)"]


def test_hypervolume_history_grows_with_feasible_trials_only():
    history, bounds = hypervolume_history(_study())
    assert list(history["trial"]) == [0, 1, 2, 3, 4, 5]
    assert list(history["feasible_trials"]) == [1, 2, 3, 4, 4, 4]
    assert history["hypervolume"].is_monotonic_increasing
    assert bounds == {"quality": (0.55, 0.40), "decode_ms": (8.0, 14.0)}
    # final value by hand: scaled (1 - (q - 0.40) / 0.15 ... ) points against (1.1, 1.1)
    scaled = [((0.55 - q) / 0.15, (d - 8.0) / 6.0) for q, d in ((0.50, 10.0), (0.55, 14.0), (0.40, 8.0), (0.45, 12.0))]
    assert history["hypervolume"].iloc[-1] == pytest.approx(hypervolume(scaled, (1.1, 1.1)))


def test_report_of_a_real_study(tmp_path, capsys, monkeypatch):
    """A study made by the search itself (with its cost-model test evaluator, in seconds), reported."""
    import sys

    from search_helpers import TINY_TOML, AnalyticEvaluator, tiny_config

    from lfm2_nas.cli import main
    from lfm2_nas.report.study import load_study
    from lfm2_nas.search.storage import open_storage
    from lfm2_nas.search.run import open_study, run_study

    journal = tmp_path / "tiny" / "journal.log"
    config = tiny_config()
    run_study(open_study(config, open_storage(journal)), config, AnalyticEvaluator())
    data = load_study(journal)
    assert data.name == "tiny" and [name for name, _ in data.objectives][:2] == ["quality", "decode_ms"]
    assert [s["seed"] for s in data.seeds] == ["lfm2-tiny", "lfm2-tiny-all-attn"]
    assert set(data.trials[data.trials["seed"] != ""]["trial"]) == {0, 1}
    assert data.hardware == ("test-hardware",)
    search_file = tmp_path / "tiny.toml"  # the search file names its storage: the report finds the study
    search_file.write_text(TINY_TOML.replace('seed = 1', f'seed = 1\nstorage = "{journal}"'))
    assert load_study(search_file).trials["trial"].tolist() == data.trials["trial"].tolist()

    monkeypatch.setattr(sys, "argv", ["lfm2-nas", "report", "study", str(journal), "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    report = (tmp_path / "r" / "report.md").read_text()
    assert "![Pareto front](pareto.png)" in report and "| lfm2-tiny | 0 | measured | CCAC |" in report
    assert (tmp_path / "r" / "hypervolume.svg").exists()
    capsys.readouterr()

    monkeypatch.setattr(sys, "argv", ["lfm2-nas", "report", "study", str(tmp_path / "nope.log"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as failed:
        main()
    assert failed.value.code == 2 and capsys.readouterr().err.splitlines() == [
        f"error: no study journal at {tmp_path / 'nope.log'}: give the journal file (experiments/<study>/journal.log) or a URL"]
