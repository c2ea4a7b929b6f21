import pandas as pd

from lfm2_nas.report import markdown as md


def test_table_formats_cells_and_aligns_numbers():
    frame = pd.DataFrame({"layout": ["a|b", "c"], "median_ms": [152.34, 0.41234], "peak_bytes": [3 * 2**30, None],
                          "n": [354483968, 3]})
    text = md.markdown_table(frame, {"median_ms": md.ms, "peak_bytes": md.nbytes})
    lines = text.splitlines()
    assert lines[0] == "| layout | median_ms | peak_bytes | n |"
    assert lines[1] == "|---|---:|---:|---:|"
    assert lines[2] == "| a\\|b | 152.3 | 3.00 GiB | 354,483,968 |"
    assert lines[3] == "| c | 0.412 | | 3 |".replace("| |", "|  |")


def test_formatters():
    assert md.percent(0.1234) == "12.3%" and md.signed_percent(-0.05) == "-5.0%" and md.ratio(1.5) == "1.50x"
    assert md.per_second("GB/s")(11.2e9) == "11.20 GB/s" and md.ms(None) == "" and md.number(0.123456) == "0.1235"


def test_document_holds_provenance_images_and_tables():
    doc = md.Document("Title", "_hardware x_")
    doc.section("Latency", "text")
    doc.image("decode.png", "decode")
    doc.table(pd.DataFrame({"a": [1]}))
    doc.table(pd.DataFrame({"a": []}))
    text = doc.text()
    assert text.startswith("# Title\n\n_hardware x_\n")
    assert "## Latency" in text and "![decode](decode.png)" in text and "| a |" in text and "_(no rows)_" in text
