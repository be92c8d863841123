"""The CLI: start-up without torch, exit codes, one-line errors, an end-to-end tiny sweep."""

import json

import pytest
import torch
from typer.testing import CliRunner

from xfbench import __version__
from xfbench.cli.main import app
from xfbench.reports.store import load_results

from .conftest import assert_no_torch, run_cli

runner = CliRunner()

TINY = ["--seq-lens", "32,64", "--heads", "2", "--head-dim", "16", "--max-time", "0.2", "--device", "cpu"]


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["attention", "--help"], ["env", "--help"], ["model", "--help"],
     ["plan", "--help"], ["doctor", "--help"]],
)
def test_help_and_version_never_import_torch(args):
    assert_no_torch(args)


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"xfbench {__version__}"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["attention", "--seq-lens", "-5"], "--seq-lens"),
        (["attention", "--seq-lens", "1.5"], "not a positive integer"),
        (["attention", "--impl", "bogus"], "unknown value 'bogus'"),
        (["attention", "--mode", "sideways"], "--mode"),
        pytest.param(
            ["attention", "--device", "cuda"], "no CUDA device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="assumes no GPU: --device cuda works here"),
        ),
        (["attention", "--device", "tpu"], "--device"),
        (["attention", "--batch", "0"], "--batch"),
        (["attention", "--batch", "x"], "--batch"),
        (["attention", "--dtype", "float7"], "--dtype"),
        (["attention", "--mem-limit", "lots"], "--mem-limit"),
        (["attention", "--resume"], "--resume needs --out"),
        (["attention", "--no-such-option"], "no-such-option"),
        (["nosuchcommand"], "nosuchcommand"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, fragment):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("xfbench: error:") and fragment in lines[0]
    assert result.stdout == "", result.stdout


def test_bad_input_in_a_real_process_has_no_traceback():
    result = run_cli("attention", "--seq-lens", "0:10")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "xfbench: error: --seq-lens: range '0:10' must be START:STOP:xFACTOR or START:STOP:+STEP"
    ]


def test_out_pointing_at_a_non_results_file_is_bad_input(tmp_path):
    (tmp_path / "results.jsonl").write_text("not json\nat all\n")
    result = run_cli("attention", *TINY, "--out", str(tmp_path), "--resume")
    assert result.returncode == 2 and "not a results line" in result.stderr
    assert (tmp_path / "results.jsonl").read_text() == "not json\nat all\n"  # untouched
    new = run_cli("attention", *TINY, "--out", str(tmp_path))  # without --resume: never written over
    assert new.returncode == 2 and "already holds a run" in new.stderr
    assert (tmp_path / "results.jsonl").read_text() == "not json\nat all\n"


def test_attention_end_to_end_tiny_sweep(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["attention", *TINY, "--impl", "naive,sdpa,lstm", "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = load_results(out)
    assert len(run.records) == 2 * 3
    assert {r.status for r in run.records} == {"ok"}
    for r in run.records:
        assert r.time.n >= 3 and r.time.median_s > 0
        assert r.metrics["flop_per_s"] > 0 and r.metrics["tokens_per_s"] > 0
        assert r.memory is not None and r.memory.peak_bytes >= 0
        assert r.info["threads"] >= 1
    assert run.header.environment["torch"].startswith("2.")
    assert "scaling" in result.output and "naive" in result.output and "lstm" in result.output
    assert str(out / "results.jsonl") in result.output

    again = runner.invoke(app, ["attention", *TINY, "--impl", "naive,sdpa,lstm", "--out", str(out), "--resume"])
    assert again.exit_code == 0
    assert "0 cases to run (6 already in the file" in again.output
    assert len(load_results(out).records) == 6


def test_plain_output_without_terminal_or_with_no_color(tmp_path):
    result = run_cli("attention", *TINY, "--impl", "sdpa", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout
    assert "[1/2]" in result.stdout  # one plain progress line per case off a terminal


def test_env_json_and_table():
    result = runner.invoke(app, ["env", "--json"])
    assert result.exit_code == 0
    info = json.loads(result.output)
    assert info["torch"].startswith("2.") and info["cpu_cores_logical"] >= 1
    table = runner.invoke(app, ["env"])
    assert table.exit_code == 0 and "NVML" in table.output
    if info["nvml"]["usable"]:  # a GPU machine: the driver answered
        assert info["nvml"]["driver_version"] and info["nvml"]["device_count"] >= 1
    else:  # the real library's no-driver path: its own reason, shown in the table
        assert info["nvml"]["reason"] and "not usable" in table.output


def test_count_flops_records_counted_over_work(tmp_path):
    result = runner.invoke(
        app, ["attention", *TINY, "--impl", "sdpa", "--seq-lens", "64", "--count-flops", "--no-calibrate",
              "--out", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    (rec,) = load_results(tmp_path).records
    # Full (non-causal) attention: the counter sees the same two GEMMs the work formula counts.
    assert rec.metrics["flops_counted_over_work"] == 1.0
    assert rec.info["flops_counted_by_module"]["Global"] == rec.metrics["work_flops_per_call"]
    assert rec.metrics["work_flops_per_call"] == rec.metrics["flops_per_call"]  # full fwd: work = convention
    assert "counted/work 1.00" in result.output


def test_the_command_list_is_each_commands_own_docstring():
    # `xfbench --help` lists COMMANDS without importing the command modules (they load lazily):
    # each listed line must be the first line of that command function's docstring.
    from xfbench.cli.main import COMMANDS, command_function

    for name, (_, short) in COMMANDS.items():
        assert command_function(name).__doc__.strip().splitlines()[0] == short, name
    out = runner.invoke(app, ["--help"]).output
    assert all(name in out for name in COMMANDS)
