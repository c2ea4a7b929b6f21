"""Result files: atomic whole-file writes and the append-only line store."""

import json
import multiprocessing
import os
import stat

import pytest

from lfm2_nas.io import LineStore, atomic_write, atomic_write_bytes, atomic_write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_file_gets_the_mode_a_plain_open_gives_not_0600(tmp_path, umask_022):
    plain = tmp_path / "plain.csv"
    plain.write_text("x\n")
    for write in (lambda p: atomic_write_text(p, "a,b\n"), lambda p: atomic_write_bytes(p, b"a,b\n"),
                  lambda p: atomic_write(p, lambda tmp: tmp.write_text("a,b\n"))):
        path = tmp_path / "out" / "table.csv"
        path.unlink(missing_ok=True)
        write(path)
        assert path.read_text() == "a,b\n"
        assert _mode(path) == _mode(plain) == 0o644
    os.umask(0o027)
    atomic_write_text(tmp_path / "group.csv", "x\n")
    assert _mode(tmp_path / "group.csv") == 0o640


def test_replacing_a_file_keeps_its_mode_and_leaves_no_temporary_file(tmp_path, umask_022):
    path = tmp_path / "rows.csv"
    path.write_text("old\n")
    os.chmod(path, 0o664)
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n" and _mode(path) == 0o664
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "rows.csv"
    atomic_write_text(path, "old\n")

    def crash(tmp):
        tmp.write_text("half a tab")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # fails inside the write itself
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


def test_a_torn_last_line_is_skipped_and_the_next_append_stays_whole(tmp_path, caplog):
    store = LineStore(tmp_path / "rows.jsonl")
    assert list(store.records()) == []  # no file yet
    store.append({"key": "a", "x": 1})
    with open(store.path, "a") as f:
        f.write('{"key": "b", "x"')  # a writer killed mid-line
    assert list(store.records()) == [{"key": "a", "x": 1}]
    assert "incomplete last line" in caplog.text
    store.append({"key": "c", "x": 2})
    assert list(store.records()) == [{"key": "a", "x": 1}, {"key": "c", "x": 2}]
    assert store.path.read_text() == '{"key": "a", "x": 1}\n{"key": "c", "x": 2}\n'


def test_a_torn_line_longer_than_the_backward_read_is_cut_whole(tmp_path):
    store = LineStore(tmp_path / "rows.jsonl")
    store.append({"key": "a"})
    with open(store.path, "a") as f:
        f.write('{"key": "b", "x": "' + "y" * 200_000)
    store.append({"key": "c"})
    assert store.path.read_text() == '{"key": "a"}\n{"key": "c"}\n'
    torn_only = LineStore(tmp_path / "torn.jsonl")
    torn_only.path.write_text('{"key": ')
    torn_only.append({"key": "d"})
    assert torn_only.path.read_text() == '{"key": "d"}\n'


def test_lines_that_are_not_json_objects_are_skipped(tmp_path):
    store = LineStore(tmp_path / "rows.jsonl")
    store.path.write_text('{"key": "a"}\nnot json\n\n[1, 2]\n{"key": "b"}\n')
    assert [r["key"] for r in store.records()] == ["a", "b"]
    with pytest.raises(ValueError, match="one line"):
        store.append({"key": "c"}, indent=2)
    assert [r["key"] for r in store.records()] == ["a", "b"]


def _append_many(path, worker: int, count: int, size: int) -> None:
    store = LineStore(path)
    for i in range(count):
        store.append({"worker": worker, "i": i, "pad": str(worker) * size})


def test_appends_from_two_processes_do_not_interleave(tmp_path):
    path = tmp_path / "rows.jsonl"
    count, size = 200, 20_000  # lines far longer than a pipe buffer, so a split write would show
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_append_many, args=(path, w, count, size)) for w in (1, 2)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
        assert p.exitcode == 0
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 2 * count + 1
    records = [json.loads(line) for line in lines[:-1]]
    for w in (1, 2):
        mine = [r for r in records if r["worker"] == w]
        assert [r["i"] for r in mine] == list(range(count))
        assert all(r["pad"] == str(w) * size for r in mine)
