"""``lfm2-nas report``: files written, and bad input as one ``error:`` line with exit status 2."""

import sys

import pytest

from lfm2_nas.cli import main


def run_cli(args, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lfm2-nas", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_layout_writes_png_svg_tables_and_markdown(tmp_path, capsys, monkeypatch):
    code, out, _ = run_cli(["report", "layout", "lfm2-tiny", "lfm2-350m:CCAACCAACCAACCAA", "--out", str(tmp_path)],
                           capsys, monkeypatch)
    assert code == 0 and "wrote" in out
    assert (tmp_path / "layout.png").read_bytes().startswith(b"\x89PNG")
    assert "<svg" in (tmp_path / "layout.svg").read_text()[:500]
    report = (tmp_path / "report.md").read_text()
    assert "![layout strips](layout.png)" in report and "## lfm2-350m:CCAACCAACCAACCAA" in report
    assert "analytic" in report  # provenance: nothing measured
    assert (tmp_path / "layout_lfm2-350m_CCAACCAACCAACCAA.csv").exists()


@pytest.mark.parametrize("args, message", [
    (["report", "layout", "no-such-layout", "--out", "{tmp}"], "error: 'no-such-layout' is not a variant name"),
    (["report", "sweep", "{tmp}/missing.jsonl", "--out", "{tmp}/o"], "error: no results at"),
    (["report", "sweep", "{tmp}/empty.jsonl", "--out", "{tmp}/o"], "error: "),
    (["report", "sweep", "{tmp}/rows.jsonl", "--out", "{tmp}/o", "--panel", "nope"], "error: unknown column(s) nope"),
    (["report", "sweep", "{tmp}/rows.jsonl", "--out", "{tmp}/o", "--compare", "a b"], "error: --compare 'a b'"),
    (["report", "sweep", "{tmp}/rows.jsonl", "--out", "{tmp}/o", "--baseline-suffix", "-x"], "error: --baseline-suffix -x"),
    (["report", "sweep", "{tmp}/rows.jsonl", "--out", "{tmp}/o", "--compare", "a vs lfm2-tiny"],
     "error: no rows for layout 'a'"),
])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, capsys, monkeypatch, args, message):
    import json

    from report_rows import row

    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "rows.jsonl").write_text(json.dumps(row("lfm2-tiny", 32, 64, [1.0], [1.0])) + "\n")
    code, _, err = run_cli([a.format(tmp=tmp_path) for a in args], capsys, monkeypatch)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), err
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_sweep_report_from_a_results_file(tmp_path, capsys, monkeypatch):
    import json

    from report_rows import failed, row

    rows = [row(name, prompt, depth, [k * prompt / 10 for k in (0.9, 1.0, 1.2)], [k * (5 + depth / 500) for k in (1, 1.1)])
            for name in ("lfm2-350m", "lfm2-350m-dense") for prompt, depth in ((128, 512), (512, 4096))]
    rows.append(failed("lfm2-350m-dense", 4096, 4096))
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "report"
    code, stdout, _ = run_cli(["report", "sweep", str(tmp_path / "rows.jsonl"), "--out", str(out), "--title", "T",
                               "--baseline-suffix", "-dense"], capsys, monkeypatch)
    assert code == 0 and "6 figures" in stdout
    for stem in ("layouts", "prefill", "decode", "memory", "roofline", "speedup"):
        assert (out / f"{stem}.png").exists() and (out / f"{stem}.svg").exists()
    report = (out / "report.md").read_text()
    assert report.startswith("# T\n\n_hardware cpu-test-2cpu@2026-01-02 (Test CPU) | measured 2026-01-02")
    assert "![decode latency](decode.png)" in report and "## Failed rows" in report and "out of memory" in report
    assert "| series | context_depth | median_ms |" in report  # one panel: no panel column; x named


def test_a_report_that_fails_part_way_writes_nothing(tmp_path, capsys, monkeypatch):
    import json

    from report_rows import row

    broken = row("lfm2-tiny", 32, 64, [1.0], [1.0])
    del broken["peak_bytes_pred"]  # latency plots can be drawn, the memory plot cannot
    (tmp_path / "rows.jsonl").write_text(json.dumps(broken) + "\n")
    code, _, err = run_cli(["report", "sweep", str(tmp_path / "rows.jsonl"), "--out", str(tmp_path / "o")],
                           capsys, monkeypatch)
    assert code == 2 and err.startswith("error: unknown column(s) peak_bytes_pred")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]
