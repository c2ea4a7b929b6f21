"""The latency predictor on rows whose times follow a known roofline-style law."""

import numpy as np
import pytest

from lfm2_nas import get_spec
from lfm2_nas.profiler import LatencyPredictor, Settings
from lfm2_nas.profiler.predictor import FEATURES, features, held_out_errors
from lfm2_nas.profiler.result import SPEC_PREFIX

# seconds per unit of each feature, in FEATURES order (ms = 1e3 * x . w)
TRUE = {
    "prefill": np.array([1 / 80e9, 1 / 40e9, 1 / 30e9, 1 / 10e9, 2e-5, 5e-5, 1e-3]),
    "decode": np.array([1 / 20e9, 1 / 25e9, 1 / 10e9, 1 / 50e9, 3e-5, 6e-5, 5e-4]),
}
PATTERNS = ["CCACCACCACACACAC", "CCCCCCCCCCCCCCCC", "CACACACACACACACA", "CCCCCCCCAAAAAAAA", "AAAAAAAAAAAAAAAA"]


def _rows(noise: float = 0.0, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i, pattern in enumerate(PATTERNS):
        for width in (512, 1024):
            spec = get_spec("lfm2-350m", pattern=pattern, hidden_size=width, num_heads=width // 64)
            for prompt, depth, batch in ((32, 128, 1), (256, 1024, 1), (128, 2048, 2)):
                wl = Settings(prompt, depth, batch=batch, threads=2)
                times = {p: 1e3 * features(p, spec, wl) @ TRUE[p] * (1 + noise * rng.standard_normal()) for p in TRUE}
                rows.append({
                    "ok": True, "hardware": "cpu-test@2000-01-01", "layout": f"{pattern}-{width}",
                    **{SPEC_PREFIX + k: v for k, v in spec.to_dict().items()},
                    **wl.to_dict(), "prefill_ms_median": times["prefill"], "decode_ms_median": times["decode"],
                })
    rows.append({**rows[0], "ok": False, "prefill_ms_median": None, "decode_ms_median": None})  # failed: ignored
    rows.append({**rows[1], "busy": True, "decode_ms_median": 1e6})  # measured on a busy machine: ignored
    return rows


def test_a_known_law_is_recovered_and_predicts_held_out_layouts_exactly():
    rows = _rows()
    predictor = LatencyPredictor().fit(rows)
    spec = get_spec("lfm2-350m", pattern="CCCACCCACCCACCCA")
    wl = Settings(200, 700, threads=2)
    expected = tuple(1e3 * features(p, spec, wl) @ TRUE[p] for p in ("prefill", "decode"))
    assert predictor.predict(spec, wl) == pytest.approx(expected, rel=1e-3)
    report = held_out_errors(rows)
    assert report["layouts"] == 10 and report["rows"] == 30
    assert report["prefill"]["mape"] < 1e-3 and report["decode"]["mape"] < 1e-3


def test_noisy_rows_give_a_held_out_error_near_the_noise():
    report = held_out_errors(_rows(noise=0.05))
    for phase in ("prefill", "decode"):
        assert 0.005 < report[phase]["mape"] < 0.12


def test_save_load_round_trip_and_clear_errors(tmp_path):
    predictor = LatencyPredictor().fit(_rows())
    loaded = LatencyPredictor.load(predictor.save(tmp_path / "p.json"))
    spec, wl = get_spec("lfm2-350m"), Settings(64, 256, threads=2)
    assert loaded.predict(spec, wl) == predictor.predict(spec, wl)
    assert loaded.hardware == ["cpu-test"] and set(FEATURES) == {"prefill", "decode"}
    with pytest.raises(LookupError, match="threads=1"):
        predictor.predict(spec, Settings(64, 256, threads=1))
    mixed = _rows() + [{**r, "hardware": "other@2000-01-01"} for r in _rows()[:3]]
    with pytest.raises(ValueError, match="several machines"):
        LatencyPredictor().fit(mixed)
