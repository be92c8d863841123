"""Results files under abuse: one rule for a damaged last line (reader and appender), the run
folder's lock (two real processes), empty and header-only files, NaN/Infinity, a large file
loaded line by line, and reports that a failed write leaves as they were."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import run_cli
from xfbench.cli.main import app
from xfbench.reports.errors import BadInput
from xfbench.reports.schema import Header, Record, case_id
from xfbench.reports.store import (
    NO_RESULTS_YET,
    ResultsWriter,
    RunLock,
    load_index,
    load_results,
    parse_line,
)

from .records import time_stats

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent


def header(run_id: str = "run-a") -> Header:
    return Header(run_id=run_id, tool_version="0.0.test", created_utc="2026-01-01T00:00:00+00:00", command="attention")


def record(size: int, status: str = "ok", run_id: str = "run-a") -> Record:
    params = {"impl": "naive", "seq_len": size}
    return Record(
        case_id=case_id("attention", params, "cpu"), run_id=run_id, workload="attention", label="attention fwd",
        variant="naive", size=size, size_name="N", params=params, device="cpu", status=status,
        reason=None if status == "ok" else "why", time=time_stats() if status == "ok" else None,
    )


def one_run(path: Path, *sizes: int, run_id: str = "run-a") -> None:
    with ResultsWriter(path, header(run_id)) as w:
        for s in sizes:
            w.append(record(s, run_id=run_id))


# --- 1. one rule for a damaged last line -----------------------------------------------------

ODD_LAST_LINES = ["[1,2]", "12", '"x"', "null", "true", '{"kind":"record","case_id":"abc"', "NaN",
                  '{"kind":"record","x":NaN}']


@pytest.mark.parametrize("odd", ODD_LAST_LINES)
@pytest.mark.parametrize("newline", ["", "\n", "\n\n"])
def test_an_odd_last_line_is_damaged_for_the_reader_and_the_appender_alike(tmp_path, odd, newline):
    """A last line that is JSON but not an object was dropped by the loader and kept by the
    appender, so a --resume wrote after it and every later command on the folder failed."""
    path = tmp_path / "results.jsonl"
    one_run(path, 128)
    with open(path, "a") as fh:
        fh.write(odd + newline)
    run = load_results(path)
    assert [r.size for r in run.records] == [128]
    assert len(run.notes) == 1 and f"{path}:3: dropped a damaged last line" in run.notes[0]
    with ResultsWriter(path, header("run-b")) as w:  # what --resume does
        w.append(record(256, run_id="run-b"))
    again = load_results(path)
    assert [r.size for r in again.records] == [128, 256] and again.notes == []
    assert odd not in path.read_text().splitlines()
    assert len(w.notes) == 1 and f"{path}:3: removed a damaged last line" in w.notes[0]
    path.write_text(path.read_text() + odd + newline)
    assert load_index(path).notes == load_results(path).notes  # the index reader: the same rule, the same note


@pytest.mark.parametrize("line, reason", [
    (b"[1,2]", "not a JSON object but an array"), (b"12", "not a JSON object but a number"),
    (b'"x"', "not a JSON object but a string"), (b"null", "not a JSON object but null"),
    (b'{"a":NaN}', "NaN is not a number JSON allows"), (b'{"a":[Infinity]}', "Infinity is not a number JSON allows"),
    (b'{"a":-Infinity}', "-Infinity is not a number JSON allows"),
    (b'{"a":1e400}', "too large for a float"), (b'{"a":' + b"9" * 320 + b'.5}', "too large for a float"),
    (b'{"a":1', "EOF"), (b'{"a":"\xff"}', "unicode"), (b'{"a":"\\ud800"}', "escape"),
])
def test_parse_line_is_the_one_rule_and_says_what_is_wrong(line, reason):
    with pytest.raises(ValueError, match=reason):
        parse_line(line)


@pytest.mark.parametrize("line", [b'{"a":1}', b' {"a": [1.5e+300, -2e-400, "NaN", "1e400"]}\r\n', b'{"id":"5e776"}'])
def test_parse_line_accepts_what_json_allows(line):
    assert isinstance(parse_line(line), dict)


def test_damage_before_the_last_line_is_bad_input_for_every_reader_and_the_appender(tmp_path):
    path = tmp_path / "results.jsonl"
    one_run(path, 128, 256)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:2], "[1,2]", lines[2]]) + "\n")  # an edit, or an old appender's doing
    before = path.read_bytes()
    for read in (load_results, load_index):
        with pytest.raises(BadInput, match=r"results.jsonl:3: not a results line \(not a JSON object"):
            read(path)
    with pytest.raises(BadInput, match="results.jsonl:3: not a results line"):
        ResultsWriter(path, header("run-c"))
    assert path.read_bytes() == before  # refused without touching it


# --- 2. the lock ----------------------------------------------------------------------------

# Holds a writer on argv[1], writes argv[2] raw after its header (a line
# half-written at the moment of a kill or of another process starting), says so, waits.
_HOLDER = textwrap.dedent("""
    import sys
    from xfbench.reports.schema import Header
    from xfbench.reports.store import ResultsWriter
    path, partial = sys.argv[1], sys.argv[2]
    held = ResultsWriter(path, Header(run_id="holder", tool_version="t", created_utc="t", command="c"))
    held._fh.write(partial)
    held._fh.flush()
    print("HOLDING", flush=True)
    sys.stdin.read()
""")


class Holder:
    def __init__(self, path: Path, partial: str = ""):
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), partial],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __enter__(self):
        assert self.proc.stdout.readline().strip() == "HOLDING"
        return self.proc

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait(timeout=30)


def test_a_second_writer_in_another_process_is_refused_naming_the_folder(tmp_path):
    path = tmp_path / "run" / "results.jsonl"
    with Holder(path) as holder:
        with pytest.raises(BadInput) as e:
            ResultsWriter(path, header("second"))
        assert f"another xfbench is writing {path.parent} (pid {holder.pid})" in str(e.value)
        with pytest.raises(BadInput, match="another xfbench is writing"):
            RunLock(path).acquire()
    # The holder was SIGKILLed: the kernel dropped its lock; a new writer goes ahead and the
    # file holds both runs (the holder's header, then this one's).
    one_run(path, 128, run_id="after")
    assert [h.run_id for h in load_results(path).headers] == ["holder", "after"]
    assert not path.with_name("results.jsonl.lock").exists()  # removed on release


def test_a_starting_writer_never_truncates_another_writers_half_written_line(tmp_path):
    path = tmp_path / "results.jsonl"
    half = '{"kind":"record","case_id":"still-being-wri'
    with Holder(path, partial=half):
        before = path.read_bytes()
        assert before.endswith(half.encode())
        with pytest.raises(BadInput, match="another xfbench is writing"):
            ResultsWriter(path, header("second"))
        assert path.read_bytes() == before  # the old appender cut it away before it knew better
        run = load_results(path)  # a reader meanwhile skips it, and says so
        assert run.records == [] and "dropped a damaged last line" in run.notes[0]


def test_a_lock_taken_early_is_handed_to_the_writer_and_held_through_the_writes(tmp_path):
    path = tmp_path / "results.jsonl"
    one_run(path, 128)
    probe = [sys.executable, "-c", "import sys\nfrom xfbench.reports.store import RunLock\n"
             "from xfbench.reports.errors import BadInput\ntry:\n    RunLock(sys.argv[1]).acquire()\n"
             "except BadInput as e:\n    print(e)\n    sys.exit(2)\n", str(path)]
    with RunLock(path) as lock:
        index = lock.check()  # before a sweep's calibration: the whole file validated, once
        assert [(r.size, r.status) for r in index.records] == [(128, "ok")]
        out = subprocess.run(probe, capture_output=True, text=True)
        assert out.returncode == 2 and f"another xfbench is writing {tmp_path}" in out.stdout
        with ResultsWriter(path, header("run-b"), lock=lock) as w:
            w.append(record(256, run_id="run-b"))
        assert lock.held  # the writer leaves a lock it was handed to its owner
        assert subprocess.run(probe, capture_output=True).returncode == 2
    assert subprocess.run(probe, capture_output=True).returncode == 0
    assert [r.size for r in load_results(path).records] == [128, 256]


def test_a_writer_refuses_a_lock_it_does_not_hold_on_its_file(tmp_path):
    with pytest.raises(RuntimeError):
        ResultsWriter(tmp_path / "results.jsonl", header(), lock=RunLock(tmp_path / "results.jsonl"))
    with RunLock(tmp_path / "other.jsonl") as other, pytest.raises(RuntimeError):
        ResultsWriter(tmp_path / "results.jsonl", header(), lock=other)


def test_a_sweep_into_a_folder_another_xfbench_is_writing_exits_2_and_writes_nothing(tmp_path):
    path = tmp_path / "results.jsonl"
    with Holder(path):  # a writer that has written its header and is measuring its first case
        before = path.read_bytes()
        out = run_cli("attention", "--fake-clock", "--seq-lens", "32", "--impl", "naive", "--heads", "2",
                      "--head-dim", "8", "--device", "cpu", "--no-calibrate", "--no-memory", "--out", str(tmp_path))
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert f"another xfbench is writing {tmp_path}" in out.stderr and "Traceback" not in out.stderr
    assert path.read_bytes() == before


# --- 3. empty and header-only files ------------------------------------------------------------

NOTHING_YET = ["", "\n", "  \n\n", '{"kind":"header","schema_version":4,"run_id":"x","tool', "[1,2]\n"]


@pytest.mark.parametrize("content", NOTHING_YET)
def test_a_file_with_no_results_yet_is_one_clear_line_for_readers(tmp_path, content):
    path = tmp_path / "results.jsonl"
    path.write_text(content)
    with pytest.raises(BadInput) as e:
        load_results(path)
    assert str(e.value) == f"{path} {NO_RESULTS_YET}"
    assert load_index(path).records == []  # nothing done: --resume runs everything


@pytest.mark.parametrize("content", NOTHING_YET)
def test_the_appender_starts_over_a_file_with_no_results_yet(tmp_path, content):
    path = tmp_path / "results.jsonl"
    path.write_text(content)
    with ResultsWriter(path, header()) as w:
        w.append(record(128))
    run = load_results(path)
    assert [r.size for r in run.records] == [128] and len(run.headers) == 1 and run.notes == []
    assert path.read_text().count("\n") == 2  # the header and the record: nothing of the old file
    assert bool(w.notes) == bool(content) and all("held no results" in n for n in w.notes)


def test_a_header_only_file_loads_as_a_run_with_no_records_and_says_so(tmp_path):
    path = tmp_path / "results.jsonl"
    ResultsWriter(path, header()).close()  # killed before its first case ended
    run = load_results(path)
    assert run.records == [] and run.header.run_id == "run-a"
    assert run.notes == [f"{path} holds no records yet: its run stopped before its first case ended"]
    assert load_index(path).records == [] and load_index(path).run_ids == ["run-a"]
    with ResultsWriter(path, header("run-b")) as w:  # --resume: a second segment, records after it
        w.append(record(128, run_id="run-b"))
    assert [r.run_id for r in load_results(path).records] == ["run-b"]


@pytest.mark.parametrize("content, exit_code, says", [
    ("", 2, NO_RESULTS_YET),
    ('{"kind":"header","schema_version":4,"run_id":"x","tool_ver', 2, NO_RESULTS_YET),
    ("HEADER", 0, "holds no records yet"),
])
def test_report_on_a_file_with_no_results_is_one_clear_line(tmp_path, content, exit_code, says):
    path = tmp_path / "results.jsonl"
    if content == "HEADER":
        ResultsWriter(path, header()).close()
    else:
        path.write_text(content)
    out = run_cli("report", str(tmp_path))
    assert "Traceback" not in out.stderr + out.stdout
    assert out.returncode == exit_code, (out.stdout, out.stderr)
    assert says in (out.stderr if exit_code else out.stdout)
    if exit_code:
        assert out.stderr.strip().count("\n") == 0


# --- 4. NaN and Infinity --------------------------------------------------------------------

@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_mid_file_are_bad_input_naming_file_and_line(tmp_path, token):
    path = tmp_path / "results.jsonl"
    one_run(path, 128, 256)
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"metrics":{}', f'"metrics":{{"flop_per_s":{token}}}')
    assert token in lines[1]
    path.write_text("\n".join(lines) + "\n")
    for read in (load_results, load_index):
        with pytest.raises(BadInput) as e:
            read(path)
        assert str(e.value) == f"{path}:2: not a results line ({token} is not a number JSON allows)"
    with pytest.raises(BadInput, match=f"{token} is not a number JSON allows"):
        ResultsWriter(path, header("run-b"))


def test_nan_on_the_last_line_is_damaged_like_any_other_odd_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    one_run(path, 128, 256)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:2], lines[2].replace('"metrics":{}', '"metrics":{"x":NaN}')]) + "\n")
    run = load_results(path)
    assert [r.size for r in run.records] == [128]
    assert "dropped a damaged last line (NaN is not a number JSON allows)" in run.notes[0]


# --- 5. scale: line by line, validated --------------------------------------------------------

def _bench():
    spec = importlib.util.spec_from_file_location("load_speed", ROOT / "bench" / "load_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_large_file_is_read_line_by_line_not_held_whole(tmp_path):
    """The loader holds the run it returns and one line at a time: never the file's text, nor every
    line parsed at once beside the records (the old loader peaked at twice what it kept)."""
    path = tmp_path / "results.jsonl"
    size, records, segments = _bench().build(path, 4 * 10**6)
    load_results(path)  # imports, caches: not part of the load's own memory
    tracemalloc.start()
    try:
        run = load_results(path)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(run.records) == records and len(run.headers) == segments
    assert peak - kept < 0.1 * kept, (peak, kept, size)
    tracemalloc.start()
    try:
        index = load_index(path)
        kept_index, peak_index = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [r.case_id for r in index.records] == [r.case_id for r in run.records]
    assert peak_index < 0.25 * kept  # the index keeps a few fields, and parses a line at a time


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.jsonl")), ids=lambda p: p.name)
def test_the_index_is_the_records_fields_on_every_fixture(fixture, tmp_path):
    run, index = load_results(fixture), load_index(fixture)
    fields = ("run_id", "case_id", "workload", "label", "variant", "size", "status")
    assert [tuple(getattr(e, f) for f in fields) for e in index.records] == \
        [tuple(getattr(r, f) for f in fields) for r in run.records]
    assert index.run_ids == [h.run_id for h in run.headers]
    copy = tmp_path / "results.jsonl"
    copy.write_bytes(fixture.read_bytes())
    with RunLock(copy) as lock:  # the lock's check validates every Record and gives the same index
        assert lock.check().records == index.records


@pytest.mark.parametrize("field, value, readers", [
    ("status", '"done"', ("load_results", "load_index", "check")),
    ("size", '"big"', ("load_results", "load_index", "check")),
    ("reason", "[1]", ("load_results", "check")),  # not an index field: the full readers catch it
])
def test_a_wrong_type_is_still_bad_input_naming_file_line_and_field(tmp_path, field, value, readers):
    path = tmp_path / "results.jsonl"
    one_run(path, 128, 256)
    lines = path.read_text().splitlines()
    obj = json.loads(lines[1])
    obj[field] = "@@"
    lines[1] = json.dumps(obj).replace('"@@"', value)
    path.write_text("\n".join(lines) + "\n")
    for name in readers:
        with pytest.raises(BadInput) as e:
            if name == "check":
                with RunLock(path) as lock:
                    lock.check()
            else:
                {"load_results": load_results, "load_index": load_index}[name](path)
        assert str(e.value).startswith(f"{path}:2: invalid record field '{field}"), (name, e.value)


# --- the contract of the open dicts (reports/contract.py) -------------------------------------
# Each damage below passed the loader before the contract and crashed a renderer (found by the
# results-file properties); now the loader names file:line and the field, and no report starts.
FIXTURES = Path(__file__).parent / "fixtures"


def _damage(line: dict, where: str, value):
    *path, last = where.split(".")
    obj = line
    for key in path:
        obj = obj[int(key)] if isinstance(obj, list) else obj[key]
    if value is KeyError:
        del obj[last]
    else:
        obj[last] = value


ATT, MODEL, PAR, PROF = "report_attention.jsonl", "report_model.jsonl", "report_parallel.jsonl", "report_profile.jsonl"
NOT_INT = "Input should be a valid integer"
CONTRACT_BREAKS = [
    # (fixture, line (0: header), field, value, what the one line says)
    (ATT, 1, "time", None, "invalid record: status 'ok' but no 'time'"),
    (MODEL, 1, "params.seq_len", "1024", f"invalid record field 'params': seq_len: {NOT_INT}"),
    (MODEL, 1, "params.n_embd", True, f"invalid record field 'params': n_embd: {NOT_INT}"),
    (ATT, 1, "params.causal", "no", "invalid record field 'params': causal: Input should be a valid boolean"),
    (PAR, 1, "params.world_size", [2], "invalid record field 'params': world_size"),
    (ATT, 0, "environment.load_avg", ["high", 1, 2], "invalid record field 'environment': load_avg.0"),
    (ATT, 0, "environment.cuda_devices", [{"index": 0}], "environment': cuda_devices.0.name"),
    (ATT, 0, "environment.calibration", {"measured_flop_per_s": 5}, "calibration.measured_flop_per_s"),
    (PROF, 1, "profile.ops", [True], "invalid record field 'profile': ops.0"),
    (PROF, 1, "profile.breakdown", "all compute", "invalid record field 'profile': breakdown"),
    (ATT, 1, "time.median_s", 0, "invalid record field 'time.median_s': Input should be greater than 0"),
    (ATT, 1, "size", -64, "invalid record field 'size"),
]


@pytest.mark.parametrize("fixture, line_no, where, value, says", CONTRACT_BREAKS,
                         ids=[f"{w}={v!r}"[:40] for _, _, w, v, _ in CONTRACT_BREAKS])
def test_a_record_that_breaks_the_contract_is_one_line_at_load_not_a_renderers_traceback(
        tmp_path, fixture, line_no, where, value, says):
    lines = [json.loads(x) for x in (FIXTURES / fixture).read_text().splitlines()]
    if where.startswith("profile."):
        line_no = next(i for i, x in enumerate(lines) if x.get("profile"))
    _damage(lines[line_no], where, value)
    path = tmp_path / "run" / "results.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(BadInput) as e:
        load_results(path)
    assert str(e.value).startswith(f"{path}:{line_no + 1}: ") and says in str(e.value), str(e.value)
    # the command, in-process (12 damages: a subprocess each would import torch 12 times)
    res = CliRunner().invoke(app, ["report", str(path.parent)])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.exc_info
    assert res.stderr.strip().splitlines() == [f"xfbench: error: {e.value}"]
    assert not (path.parent / "report.html").exists()


def test_the_writers_records_keep_the_contract_and_a_key_it_does_not_declare_passes(tmp_path):
    """Every fixture (what the writer wrote, schema v1 to v4) loads; a key the contract does not
    name, of any type, is kept as it is."""
    for fixture in sorted(FIXTURES.glob("*.jsonl")):
        assert load_results(fixture).records
    lines = [json.loads(x) for x in (FIXTURES / "report_model.jsonl").read_text().splitlines()]
    lines[1]["params"]["a_later_key"] = {"any": ["thing"]}
    lines[0]["environment"]["gpu_clock_policy"] = [1, "x"]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    run = load_results(path)
    assert run.records[0].params["a_later_key"] == {"any": ["thing"]}
    assert run.header.environment["gpu_clock_policy"] == [1, "x"]


def test_a_v1_record_whose_metrics_are_not_an_object_is_named_not_a_migration_traceback(tmp_path):
    lines = (FIXTURES / "results_v1.jsonl").read_text().splitlines()
    obj = json.loads(lines[2])
    obj["metrics"] = True
    lines[2] = json.dumps(obj)
    header = json.loads(lines[0])
    header["git"] = [1, 2]  # v1's provenance, not an object
    lines[0] = json.dumps(header)
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInput, match=r":3: invalid record field 'metrics'"):
        load_results(path)
    with pytest.raises(BadInput, match=r":3: invalid record field 'metrics'"):
        with RunLock(path) as lock:  # what --resume checks before it measures
            lock.check()


# --- 6. atomic outputs ----------------------------------------------------------------------

_FAILING_WRITE = textwrap.dedent("""
    import resource, signal, sys
    from xfbench.reports.errors import BadInput
    from xfbench.reports.writer import write_output, write_files
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails (EFBIG), like a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    for call in (lambda: write_output("<html>" + "x" * 500_000, sys.argv[1]),
                 lambda: write_files({"a.svg": b"<svg/>", "b.svg": b"y" * 500_000}, sys.argv[2])):
        try:
            call()
        except BadInput as e:
            print(e)
""")


def test_a_failed_write_leaves_the_old_report_and_figures_in_place(tmp_path):
    report, figures = tmp_path / "report.html", tmp_path / "figures"
    figures.mkdir()
    report.write_text("the good report")
    (figures / "b.svg").write_text("the good figure")
    out = subprocess.run([sys.executable, "-c", _FAILING_WRITE, str(report), str(figures)],
                         capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and len(lines) == 2, (out.stdout, out.stderr)
    assert lines[0].startswith(f"cannot write {report}: File too large")
    assert lines[1].startswith(f"cannot write {figures / 'b.svg'}: File too large")
    assert report.read_text() == "the good report" and (figures / "b.svg").read_text() == "the good figure"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.svg", "b.svg", "figures", "report.html"]  # no temp


def test_reports_and_cli_write_files_only_through_write_output():
    """Every report, figure and export goes through reports.writer (temporary file, then rename):
    no other `write_text(`, `write_bytes(` or `open(..., "w")` in reports/ or cli/, except the
    files listed here, each with why it is not a report."""
    import re

    allowed = {
        "reports/writer.py",  # the writer itself
        "reports/store.py",  # results.jsonl: appended line by line, fsynced (never rewritten)
        "reports/history.py",  # the SQLite history: its own transactions
    }
    pattern = re.compile(r"\.write_(text|bytes)\(|open\([^)]*['\"][wax]b?\+?['\"]")
    found = sorted(
        str(p.relative_to(ROOT)) for folder in ("reports", "cli") for p in (ROOT / folder).rglob("*.py")
        if pattern.search(p.read_text()) and str(p.relative_to(ROOT)) not in allowed
    )
    assert found == [], f"write through reports.writer.write_output instead: {found}"
