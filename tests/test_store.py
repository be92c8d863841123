"""Results files: append+fsync per record, load back, damaged lines, schema versions, fixtures."""

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from xfbench.reports.errors import BadInput
from xfbench.reports.schema import SCHEMA_VERSION, Header, Record, case_id, migrate, migrate_to_2
from xfbench.reports.store import ResultsWriter, load_results
from xfbench.reports.terminal import render

from .records import time_stats

FIXTURES = Path(__file__).parent / "fixtures"
SNAPSHOTS = Path(__file__).parent / "snapshots"


def header(run_id: str = "run-a") -> Header:
    return Header(run_id=run_id, tool_version="0.0.test", created_utc="2026-01-01T00:00:00+00:00", command="attention")


def record(size: int, status: str = "ok") -> Record:
    params = {"impl": "naive", "seq_len": size}
    return Record(
        case_id=case_id("attention", params, "cpu"), workload="attention", label="attention fwd",
        variant="naive", size=size, size_name="N", params=params, device="cpu", status=status,
        reason=None if status == "ok" else "why", time=time_stats() if status == "ok" else None,
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


# The child appends one record, says so, then waits to be killed: what a crash right after
# append() returned leaves on disk must hold that record (a writer that only buffered, or
# flushed later, loses it: the kill gives Python no chance to flush).
_CRASH_CHILD = """
import sys
from xfbench.reports.schema import Header, Record
from xfbench.reports.store import ResultsWriter
w = ResultsWriter(sys.argv[1], Header(run_id="crash", tool_version="t", created_utc="t", command="c"))
w.append(Record(case_id="c1", workload="w", label="l", variant="v", size=1, size_name="N", params={},
                device="cpu", status="skipped", reason="a record is all this test needs"))
print("APPENDED", flush=True)
sys.stdin.read()
"""


def test_a_record_survives_a_kill_right_after_append_returns(tmp_path):
    path = tmp_path / "results.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASH_CHILD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "APPENDED"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    run = load_results(path)
    assert [r.case_id for r in run.records] == ["c1"] and run.records[0].run_id == "crash"


def test_append_syncs_each_line_to_the_disk(tmp_path, monkeypatch):
    # A kill cannot tell a flushed line from a synced one (the page cache survives it; a power
    # cut does not), so the fsync itself is watched at the OS boundary, still really called.
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_size), real(fd)))
    w = ResultsWriter(tmp_path / "results.jsonl", header())
    w.append(record(128))
    size = (tmp_path / "results.jsonl").stat().st_size
    w.close()
    assert len(synced) == 2 and synced[-1] == size  # header, then the record, each synced whole


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
        ("", "holds no results yet"),  # a kill during the first write: nothing to report
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


def test_records_name_their_run_and_v1_segments_get_one(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path, header("run-a")) as w:
        w.append(record(128).model_copy(update={"run_id": "run-a"}))
    v1 = json.loads((FIXTURES / "results_v1.jsonl").read_text().splitlines()[0])
    with open(path, "a") as fh:  # an old segment after a new one: each migrates by its own version
        fh.write(json.dumps(v1) + "\n")
        fh.write(json.dumps({**record(256).model_dump(), "run_id": None, "kind": "record"}) + "\n")
    run = load_results(path)
    assert [h.run_id for h in run.headers][0] == "run-a"
    assert run.headers[1].run_id.startswith("v1-")
    assert [r.run_id for r in run.records] == ["run-a", run.headers[1].run_id]
    # each record joins to its own run's header: environment and calibration of that run
    assert [run.header_of(r).command for r in run.records] == ["attention", v1["command"]]
    assert run.header_of(run.records[1]).environment == v1["environment"]


def test_migrate_to_2_splits_provenance_and_renames_the_v1_ratio():
    old_header = {"kind": "header", "schema_version": 1, "tool_version": "0.1.0", "created_utc": "t",
                  "command": "attention", "git": {"commit": "abc", "dirty": False}}
    h = migrate(old_header, 1)
    assert "git" not in h and h["workdir"] == {"path": None, "commit": "abc", "dirty": False}
    assert h["xfbench"] == {"version": "0.1.0", "commit": None, "dirty": None}
    assert h["run_id"] == migrate(old_header, 1)["run_id"]  # the same file gets the same id every load
    rec = migrate_to_2({"kind": "record", "metrics": {"flops_counted_over_analytic": 1.9, "flop_per_s": 1.0}})
    # v1 divided counted FLOPs by the convention FLOPs: the value keeps that meaning, under that name.
    assert rec["metrics"] == {"flops_counted_over_convention": 1.9, "flop_per_s": 1.0}


def test_migrate_to_3_gives_older_records_no_ranks():
    rec = migrate({"kind": "record", "metrics": {}}, 2)
    assert rec["ranks"] is None
    assert "ranks" not in migrate({"kind": "header", "run_id": "r"}, 2)


def test_migrate_to_4_gives_older_records_no_profile():
    rec = migrate({"kind": "record", "metrics": {}}, 3)
    assert rec["profile"] is None
    assert "profile" not in migrate({"kind": "header", "run_id": "r"}, 3)


@pytest.mark.parametrize("name,version", [("results_v1", 1), ("results_v2", 2), ("results_v3", 3)])
def test_every_past_version_loads_and_renders(name, version):
    """tests/fixtures keeps a results file of every past schema version: each loads through the
    migrations and renders in every format."""
    from xfbench.reports.render import RENDERERS, render

    path = FIXTURES / f"{name}.jsonl"
    assert json.loads(path.read_text().splitlines()[0])["schema_version"] == version
    run = load_results(path)
    assert run.records and all(r.profile is None for r in run.records)
    assert all(r.ranks is None for r in run.records) or version >= 3
    assert version < 3 or any(r.ranks for r in run.records)
    for fmt in RENDERERS:
        assert render(fmt, run)
