"""Failures are data: an out-of-memory case becomes a record, larger sizes are skipped, exit 3."""

from xfbench.reports.store import load_results

from .conftest import run_cli


def test_oom_record_skips_larger_lengths_and_sweep_goes_on(tmp_path):
    # naive at N=2048 with H=2 needs a 32 MiB score matrix: past a 24 MiB cap.
    result = run_cli(
        "attention", "--seq-lens", "128,256,2048,4096", "--impl", "naive,sdpa", "--heads", "2",
        "--head-dim", "16", "--max-time", "0.2", "--mem-limit", "24MiB", "--device", "cpu",
        "--out", str(tmp_path),
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    status = {(r.variant, r.size): r for r in load_results(tmp_path).records}
    assert len(status) == 8
    assert status["naive", 128].status == "ok" and status["naive", 256].status == "ok"
    oom = status["naive", 2048]
    assert oom.status == "oom" and "allocate" in oom.reason
    skipped = status["naive", 4096]
    assert skipped.status == "skipped" and skipped.reason == "naive ran out of memory at N=2048"
    # The other implementation's sweep continued to the end.
    assert all(status["sdpa", n].status == "ok" for n in (128, 256, 2048, 4096))
    assert "OOM" in result.stdout and "1 of 8 cases failed" in result.stdout


def test_resume_keeps_skipping_past_an_earlier_oom(tmp_path):
    common = ["--impl", "naive", "--heads", "2", "--head-dim", "16", "--max-time", "0.2", "--mem-limit", "24MiB",
              "--device", "cpu", "--no-calibrate", "--out", str(tmp_path)]
    first = run_cli("attention", "--seq-lens", "128,2048", *common)
    assert first.returncode == 3, first.stdout + first.stderr
    again = run_cli("attention", "--seq-lens", "128,2048,4096", "--resume", *common)
    assert "1 cases to run (2 already in the file" in again.stdout
    assert again.returncode == 3  # the plan still holds the earlier run's OOM
    assert "1 of 3 cases failed" in again.stdout
    run = load_results(tmp_path)
    assert len(run.headers) == 2  # the resumed run wrote its own header
    last = run.records[-1]
    assert (last.size, last.status, last.reason) == (4096, "skipped", "naive ran out of memory at N=2048")
