"""--fake-clock runs repeat exactly: the same command twice gives the same records but for the
fields that say when the run was (its id, start times, wall times)."""

from typer.testing import CliRunner

from xfbench.cli.main import app
from xfbench.reports.store import load_results

WHEN = {"run_id", "started_utc", "wall_s"}  # the record fields that say when (and which run)
HEADER_WHEN = {"run_id", "created_utc", "argv", "environment"}  # argv names --out; environment has the load


def _run(out):
    args = ["attention", "--fake-clock", "--seq-lens", "64,128", "--impl", "naive,sdpa,lstm", "--mode", "fwd,fwdbwd",
            "--heads", "2", "--head-dim", "16", "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return load_results(out)


def test_the_same_fake_clock_command_twice_gives_the_same_records(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    assert len(a.records) == len(b.records) == 12
    for ra, rb in zip(a.records, b.records, strict=True):
        assert ra.model_dump(exclude=WHEN) == rb.model_dump(exclude=WHEN), ra.case_id
        assert ra.time.clock == "fake" and ra.time.n >= 6
    assert a.header.model_dump(exclude=HEADER_WHEN) == b.header.model_dump(exclude=HEADER_WHEN)
