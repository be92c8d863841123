"""Results files: append+fsync per record, load back, damaged lines, schema versions, fixtures."""

import io
import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from xfbench.reports.errors import BadInput
from xfbench.reports.schema import SCHEMA_VERSION, Header, Record, case_id
from xfbench.reports.store import ResultsWriter, load_results
from xfbench.reports.terminal import render

FIXTURES = Path(__file__).parent / "fixtures"
SNAPSHOTS = Path(__file__).parent / "snapshots"


def header() -> Header:
    return Header(tool_version="0.0.test", created_utc="2026-01-01T00:00:00+00:00", command="attention")


def record(size: int, status: str = "ok") -> Record:
    params = {"impl": "naive", "seq_len": size}
    return Record(
        case_id=case_id("attention", params, "cpu"), workload="attention", label="attention fwd",
        variant="naive", size=size, size_name="N", params=params, device="cpu", status=status,
        reason=None if status == "ok" else "why",
    )


def test_writer_round_trip_and_append(tmp_path):
    path = tmp_path / "run" / "results.jsonl"
    with ResultsWriter(path, header()) as w:
        w.append(record(128))
        w.append(record(256, "oom"))
    with ResultsWriter(path, header()) as w:  # a second command into the same folder appends
        w.append(record(512, "skipped"))
    run = load_results(path.parent)
    assert run.header.schema_version == SCHEMA_VERSION
    assert [(r.size, r.status) for r in run.records] == [(128, "ok"), (256, "oom"), (512, "skipped")]
    # Each command that wrote opened its own segment, so each record sits under its run's header.
    assert sum(1 for line in path.read_text().splitlines() if '"kind":"header"' in line) == 2
    assert len(run.headers) == 2 and run.header == run.headers[0]


def test_each_record_is_on_disk_before_append_returns(tmp_path):
    path = tmp_path / "results.jsonl"
    w = ResultsWriter(path, header())
    w.append(record(128))
    # Read through a separate file descriptor while the writer is still open.
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, 1 << 20).decode()
    finally:
        os.close(fd)
    w.close()
    assert data.count("\n") == 2 and '"size":128' in data


def test_damaged_last_line_is_dropped_with_a_note_and_appends_stay_valid(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path, header()) as w:
        w.append(record(128))
    with open(path, "a") as fh:
        fh.write('{"kind":"record","case_id":"abc"')  # killed mid-write
    run = load_results(path)
    assert len(run.records) == 1 and "damaged last line" in run.notes[0]
    with ResultsWriter(path, header()) as w:
        w.append(record(256))
    assert [r.size for r in load_results(path).records] == [128, 256]


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("", "no header line"),
        ("hello\nworld\n", "not a results line"),
        ('{"kind":"record"}\n', "no header line"),
        ('{"kind":"header","schema_version":"one"}\n', "integer schema_version"),
        ('{"kind":"header","schema_version":1,"tool_version":"x","created_utc":"t","command":"c"}\n'
         '{"kind":"record","status":"ok"}\n', "invalid record field"),
    ],
)
def test_bad_results_files_are_one_line_errors(tmp_path, content, fragment):
    path = tmp_path / "results.jsonl"
    path.write_text(content)
    with pytest.raises(BadInput) as e:
        load_results(path)
    assert fragment in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("version", [0, -3, True])
def test_impossible_schema_versions_are_bad_input(tmp_path, version):
    path = tmp_path / "results.jsonl"
    h = header().model_dump()
    h["schema_version"] = version
    path.write_text(json.dumps(h) + "\n")
    with pytest.raises(BadInput, match="schema"):
        load_results(path)


def test_out_that_cannot_be_written_is_bad_input(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(BadInput, match="cannot write results"):
        ResultsWriter(blocker / "results.jsonl", header())


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "results.jsonl"
    h = header().model_dump()
    h["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(h) + "\n")
    with pytest.raises(BadInput, match="newer than this xfbench"):
        load_results(path)


def test_missing_file(tmp_path):
    with pytest.raises(BadInput, match="no results file"):
        load_results(tmp_path / "nope")


def test_case_id_is_stable_and_order_free():
    a = case_id("attention", {"impl": "naive", "seq_len": 128}, "cpu")
    assert a == case_id("attention", {"seq_len": 128, "impl": "naive"}, "cpu")
    assert a != case_id("attention", {"impl": "naive", "seq_len": 256}, "cpu")
    assert len(a) == 12


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("results_v*.jsonl")), ids=lambda p: p.name)
def test_every_past_schema_version_loads_and_renders(fixture):
    run = load_results(fixture)
    assert run.records, "fixture has records"
    buf = io.StringIO()
    render(run, Console(file=buf, width=160, no_color=True, force_terminal=False))
    text = buf.getvalue()
    snapshot = SNAPSHOTS / f"terminal_{fixture.stem}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        snapshot.write_text(text)
    assert text == snapshot.read_text(), f"rendering changed; rerun with UPDATE_SNAPSHOTS=1 if intended ({snapshot})"
