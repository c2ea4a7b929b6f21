"""``search confirm``: the statistics (intervals, dominance with confidence), the rounds and their
resumption, and the command, on a synthetic measurer whose true figures and noise are known."""

import json
import math

import numpy as np
import optuna
import pandas as pd
import pytest
from search_helpers import AnalyticEvaluator, run_cli, tiny_config

from lfm2_nas.registry import get_spec
from lfm2_nas.report.confidence import (
    bootstrap_mean,
    confirmed_front,
    dominates_with_confidence,
    paired_ratio,
    t_mean,
    welch_difference,
)
from lfm2_nas.report.confirmed import summarize_confirmation
from lfm2_nas.search.confirm import Candidate, ConfirmError, Plan, round_order, run_confirmation
from lfm2_nas.search.measurements import LatencyResult, QualityScore
from lfm2_nas.search.run import open_study, run_study
from lfm2_nas.search.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.ERROR)
TEXT = {'tier = "analytic"': 'tier = "text"\nbudget = 0.1'}


# --- statistics ---------------------------------------------------------------------------------

def test_intervals_are_deterministic_and_bound_what_they_should():
    values = [60.0, 66.0, 55.0, 58.0, 63.0, 61.0]
    first, again = bootstrap_mean(values), bootstrap_mean(values)
    assert first == again and first.low < np.mean(values) < first.high
    assert math.isinf(bootstrap_mean([60.0]).low)  # one round bounds nothing
    ratio = paired_ratio([v * 0.8 for v in values], values)
    assert ratio.estimate == pytest.approx(0.8) and ratio.high < 1 and ratio.sign(1.0) == -1
    t = t_mean([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.303
    assert t.estimate == 2 and t.half_width == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    exact = welch_difference([2.0, 2.0, 2.0], [1.5, 1.5, 1.5])
    assert (exact.low, exact.high) == (0.5, 0.5) and exact.sign(0.0) == 1
    assert welch_difference([2.19, 2.20, 2.21], [2.20, 2.21, 2.22]).sign(0.0) == 0  # inside the seed spread
    with pytest.raises(ValueError):
        paired_ratio([1.0, 2.0], [1.0])


def test_dominance_with_confidence_is_front_dominance_on_signs():
    assert dominates_with_confidence((-1, 0, 0))
    assert not dominates_with_confidence((-1, 1, 0))  # a trade-off
    assert not dominates_with_confidence((0, 0, 0))  # within the noise everywhere
    signs = {("w", "ref"): (-1, 0), ("n", "ref"): (0, 0), ("w", "n"): (-1, 0)}

    def lookup(a, b):
        return signs[(a, b)] if (a, b) in signs else tuple(-v for v in signs.get((b, a), (0, 0)))

    assert confirmed_front(["ref", "w", "n"], lookup, "ref") == ["w"]


# --- a synthetic measurer with known truth and noise ----------------------------------------------

# trial -> (pattern, true decode ms, true prefill ms, true bits per byte)
TRUTH = {
    0: ("CCACCA", 60.0, 1600.0, 2.208),  # the LFM2 reference
    1: ("AAAAAA", 66.0, 1700.0, 2.265),  # its all-attention baseline: slower, worse
    2: ("CACCCA", 60.0, 1400.0, 2.208),  # a true winner: prefill 12.5% faster, same decode and quality
    3: ("CCCACA", 60.0, 1600.0, 2.208),  # looked better in the study only by luck: the reference's twin
    4: ("CCCCCA", 60.0, 1280.0, 2.260),  # a real trade-off: prefill 20% faster, quality worse
}


class NoisyMeasurer:
    """Figures = truth x a slowdown shared by the whole round (+-15%, like this VM over minutes) x 2%
    per measurement; quality = truth + seed noise (sd 0.007 bits per byte, the proxy's measured spread)."""

    def __init__(self, specs, rounds_seed=0):
        self.by_hash = {spec.spec_hash(): trial for trial, spec in specs.items()}
        self.rng = np.random.default_rng(rounds_seed)
        self.layouts = len(specs)
        self.calls = {"latency": 0, "quality": 0}
        self.round_factor = [float(f) for f in 1 + self.rng.uniform(-0.15, 0.15, size=100)]

    def hardware(self):
        return {"slug": "test-hardware"}

    def remeasure(self, spec, processes, store):
        round_ = self.calls["latency"] // self.layouts
        self.calls["latency"] += 1
        _, decode, prefill, _ = TRUTH[self.by_hash[spec.spec_hash()]]
        slow = self.round_factor[round_]
        noise = 1 + self.rng.normal(0, 0.02, size=2)
        return LatencyResult(ok=True, decode_ms=decode * slow * noise[0], prefill_ms=prefill * slow * noise[1],
                             peak_bytes=1000)

    def quality(self, spec, seed=None, budget=None):
        self.calls["quality"] += 1
        trial = self.by_hash[spec.spec_hash()]
        noise = np.random.default_rng([seed, trial]).normal(0, 0.007)
        return QualityScore(ok=True, score=TRUTH[trial][3] + noise, metric="val_bits_per_byte", higher_is_better=False)


def _candidates():
    base = get_spec("lfm2-tiny")
    specs = {t: base.replace(layer_types=tuple("conv" if c == "C" else "full_attention" for c in p))
             for t, (p, *_) in TRUTH.items()}
    roles = {0: "lfm2-tiny", 1: "lfm2-tiny-all-attn"}
    return specs, [Candidate(t, roles.get(t, "front"), s) for t, s in specs.items()]


def test_confirmation_keeps_true_winners_and_drops_advantages_that_are_noise(tmp_path):
    specs, candidates = _candidates()
    plan = Plan(rounds=6, processes=2, seeds=(1, 2, 3), budgets=(0.1,))
    records = run_confirmation(candidates, plan, NoisyMeasurer(specs), tmp_path, "fp")
    config = tiny_config(**TEXT)
    result = summarize_confirmation(records, candidates, config, raw_front=[2, 3, 4])
    again = summarize_confirmation(records, candidates, config, raw_front=[2, 3, 4])
    assert result == again  # fixed seeds: deterministic
    assert result["confirmed_front"] == [2, 4]
    notes = {e["trial"]: e["note"] for e in result["layouts"]}
    assert notes[3] == "dominated beyond the noise by trial(s) 2"  # the lucky twin is dropped
    assert notes[0].startswith("dominated beyond the noise by trial(s) 2")  # the winner beats LFM2
    assert "dominated" in notes[1]
    statement, trade = result["statements"]
    assert trade.startswith("trial(s) 4 trade one objective for another against lfm2-tiny (trial 0)")
    assert statement.startswith("layout CACCCA (trial 2) is faster than lfm2-tiny (trial 0) by 13.6% ± 1.8%")
    assert "in prefill" in statement and "decode within the noise" in statement
    assert "at equal quality within" in statement and statement.endswith("bits per byte")
    winner = next(e for e in result["layouts"] if e["trial"] == 2)
    assert winner["vs_reference"]["prefill_ms"]["low"] < 0.875 < winner["vs_reference"]["prefill_ms"]["high"]  # truth
    assert winner["rounds"] == 6 and winner["seeds"] == 3


def test_nothing_beats_the_reference_when_every_difference_is_noise(tmp_path):
    specs, candidates = _candidates()
    twins = [candidates[0], candidates[3]]
    records = run_confirmation(twins, Plan(6, 1, (1, 2, 3), (0.1,)), NoisyMeasurer(specs), tmp_path, "fp")
    result = summarize_confirmation(records, twins, tiny_config(**TEXT), raw_front=[3])
    assert result["confirmed_front"] == [0]
    assert result["layouts"][1]["note"] == "within the noise of the reference (trial 0) on every objective"
    assert result["statements"] == ["nothing here beats lfm2-tiny (trial 0) beyond the noise"]


def test_rounds_alternate_order_and_a_rerun_measures_only_what_is_missing(tmp_path):
    specs, candidates = _candidates()
    assert [c.trial for c in round_order(candidates, 0)] == [0, 1, 2, 3, 4]
    assert [c.trial for c in round_order(candidates, 1)] == [4, 3, 2, 1, 0]
    measurer = NoisyMeasurer(specs)
    run_confirmation(candidates, Plan(2, 1, (1, 2, 3), (0.1,)), measurer, tmp_path, "fp")
    assert measurer.calls == {"latency": 10, "quality": 15}
    again = NoisyMeasurer(specs)
    records = run_confirmation(candidates, Plan(3, 1, (1, 2, 3), (0.1, 0.2)), again, tmp_path, "fp")
    assert again.calls == {"latency": 5, "quality": 15}  # one more round, the larger budget's seeds
    assert len(records) == 15 + 30
    with pytest.raises(ConfirmError, match="another search file"):
        run_confirmation(candidates, Plan(3, 1, (1,), (0.1,)), NoisyMeasurer(specs), tmp_path, "other")


def test_a_failed_measurement_is_recorded_and_measured_again_next_time(tmp_path):
    specs, candidates = _candidates()

    class Failing(NoisyMeasurer):
        def remeasure(self, spec, processes, store):
            return LatencyResult(ok=False, reason="out of memory: test")

    run_confirmation(candidates[:2], Plan(2, 1, (1, 2, 3), (0.1,)), Failing(specs), tmp_path, "fp")
    lines = [json.loads(line) for line in (tmp_path / "measurements.jsonl").read_text().splitlines()]
    assert sum(r.get("reason") == "out of memory: test" for r in lines) == 4
    measurer = NoisyMeasurer(specs)
    run_confirmation(candidates[:2], Plan(2, 1, (1, 2, 3), (0.1,)), measurer, tmp_path, "fp")
    assert measurer.calls == {"latency": 4, "quality": 0}


# --- the command ------------------------------------------------------------------------------------

@pytest.fixture
def tiny_study(tmp_path, monkeypatch):
    """A finished tiny study under ``<tmp>/experiments/tiny``; ``search confirm`` measures with a
    :class:`NoisyMeasurer` whose truth is the study's own cost-model figures."""
    import lfm2_nas.cli.search as cli_search

    config = tiny_config()
    study = open_study(config, open_storage(tmp_path / "experiments" / "tiny" / "journal.log"))
    evaluator = AnalyticEvaluator()
    run_study(study, config, evaluator)

    class StudyTruth(NoisyMeasurer):
        def __init__(self):
            specs = {t.number: t.user_attrs["spec"] for t in study.get_trials() if "spec" in t.user_attrs}
            from lfm2_nas.spec import ModelSpec

            super().__init__({n: ModelSpec.from_dict(s) for n, s in specs.items()})

        def remeasure(self, spec, processes, store):
            self.calls["latency"] += 1
            truth = evaluator.latency(spec)
            slow = 1 + self.rng.normal(0, 0.05)
            return LatencyResult(ok=True, decode_ms=truth.decode_ms * slow, prefill_ms=truth.prefill_ms * slow,
                                 peak_bytes=truth.peak_bytes)

        def quality(self, spec, seed=None, budget=None):
            return evaluator.quality(spec)

    monkeypatch.setattr(cli_search, "_confirm_measurer", lambda *args: StudyTruth())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_confirm_command_writes_tables_stores_the_result_and_status_shows_it(tiny_study, monkeypatch, capsys):
    result = run_cli(monkeypatch, capsys, "search", "confirm", "--study", "tiny", "--rounds", "3",
                     "--processes", "1", "--quality-seeds", "3", "--trial", "2")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["reference"] == 0 and summary["rounds"] == 3 and summary["seeds"] == [1, 2, 3]
    assert summary["statements"] and set(summary["confirmed_front"]) <= {0, 1, 2, *summary["raw_front"]}
    folder = tiny_study / "experiments" / "tiny" / "confirm"
    layouts = pd.read_csv(folder / "layouts.csv")
    assert {0, 1, 2} <= set(layouts["trial"]) and (layouts["rounds"] == 3).all()
    assert (folder / "pairs.csv").is_file() and (folder / "measurements.jsonl").is_file()
    stored = json.loads((tiny_study / "experiments" / "tiny" / "summary.json").read_text())["confirmation"]
    assert stored["confirmed_front"] == summary["confirmed_front"]
    status = run_cli(monkeypatch, capsys, "search", "status", "--study", "tiny")
    assert "confirmed front (3 rounds x 1 process, quality seeds 1, 2, 3, 95% intervals)" in status.stdout
    assert summary["statements"][0] in status.stdout
    again = run_cli(monkeypatch, capsys, "search", "confirm", "--study", "tiny", "--rounds", "3", "--processes", "1")
    assert again.returncode == 0 and "round" not in again.stderr.split("\n", 1)[1]  # nothing left to measure
    report = run_cli(monkeypatch, capsys, "report", "study", "experiments/tiny/journal.log", "--out", "report")
    assert report.returncode == 0, report.stderr
    assert "## Confirmation" in (tiny_study / "report" / "report.md").read_text()


def test_confirm_refuses_bad_input_in_one_line(tiny_study, monkeypatch, capsys):
    for args, message in ((["--trial", "999"], "error: trial(s) 999 have no layout to confirm"),
                          (["--quality-budget", "0.5"], "error: --quality-budget 0.5 must be larger"),
                          (["--quality-seeds", "2"], None)):
        result = run_cli(monkeypatch, capsys, "search", "confirm", "--study", "tiny", *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        if message:
            assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith(message)


def test_confirm_refuses_a_study_whose_lfm2_seed_has_not_run(tmp_path, monkeypatch, capsys):
    config = tiny_config(**{'name = "tiny"': 'name = "fresh"'})
    open_study(config, open_storage(tmp_path / "experiments" / "fresh" / "journal.log"))  # seeds queued, none run
    monkeypatch.chdir(tmp_path)
    result = run_cli(monkeypatch, capsys, "search", "confirm", "--study", "fresh")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: the study's lfm2-tiny seed has no layout yet to compare with: "
                                     "run 'lfm2-nas search run' first")
    assert not (tmp_path / "experiments" / "fresh" / "confirm").exists()


def test_non_transitive_decisions_are_found_as_cycles():
    from lfm2_nas.report.confirmed import non_transitive

    assert non_transitive([(12, 14), (14, 23), (23, 12), (0, 12), (17, 0)]) == [[12, 14, 23]]
    assert non_transitive([(1, 2), (2, 3), (1, 3)]) == []  # a consistent order
    assert non_transitive([(1, 2), (2, 1), (3, 4), (4, 3)]) == [[1, 2], [3, 4]]


def test_limits_set_on_the_study_machine_are_scaled_when_confirming_on_other_hardware(tmp_path):
    specs, candidates = _candidates()
    plan = Plan(rounds=6, processes=2, seeds=(1, 2, 3), budgets=(0.1,))
    records = run_confirmation(candidates, plan, NoisyMeasurer(specs), tmp_path, "fp")
    config = tiny_config("\n[budget]\ndecode_ms = 45.0\n", **TEXT)  # set on a machine 1.5x faster than this one
    here = summarize_confirmation(records, candidates, config, raw_front=[2, 3, 4])
    assert here["confirmed_front"] == [] and here["limit_scale"] == {}
    assert all(e["note"].startswith("over the study's limit on decode_ms") for e in here["layouts"])
    moved = summarize_confirmation(records, candidates, config, raw_front=[2, 3, 4],
                                   moved_from=("faster-hardware", {"decode_ms": 40.0, "prefill_ms": 1000.0}))
    reference_mean = np.mean([r["decode_ms"] for r in records if r["kind"] == "latency" and r["trial"] == 0])
    assert moved["limit_scale"] == {"decode_ms": pytest.approx(reference_mean / 40.0)}  # no prefill limit to scale
    assert moved["confirmed_front"] == [2, 4] and moved["study_hardware"] == "faster-hardware"
    assert any(s.startswith("measured on other hardware than the study (faster-hardware)") for s in moved["statements"])
