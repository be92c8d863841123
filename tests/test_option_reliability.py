"""Options, environment and the memory cap under hostile but realistic use (issue 12).

Each failure is one line on stderr and exit code 2 before anything is calibrated or measured
(the isolated calibration cache folder is never made, the run folder never written); a cached
calibration and a small --mem-limit no longer kill the process; a calibration cache claiming
impossible figures is measured again; a Ctrl-C says what it interrupted.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch

from xfbench.cli import parse
from xfbench.cli.model import model_plan
from xfbench.profilers import calibration_cache as cc
from xfbench.profilers import memory
from xfbench.profilers.calibrate import load_or_calibrate
from xfbench.profilers.calibration_cache import CACHE_ENV, cache_dir, cache_path, calibration_key
from xfbench.reports.errors import BadInput
from xfbench.reports.store import load_results

from .conftest import XFBENCH, fast_policy, run_cli

CPU = torch.device("cpu")
MIB = 2**20
TINY = dict(sizes=(32, 64), buffer_bytes=MIB, policy=fast_policy(warmup_max_s=0.05))
# A tiny attention sweep: one case, short caps, no report or history.
ATTENTION = ["attention", "--seq-lens", "64", "--impl", "sdpa", "--heads", "2", "--head-dim", "16",
             "--max-time", "0.05", "--no-html", "--no-history", "--device", "cpu"]


# 1. --mem-limit with a cached calibration -------------------------------------------------


def test_mem_limit_runs_every_case_when_the_calibration_comes_from_the_cache(tmp_path):
    # 16 intra-op threads need 16 x 8 MiB of stacks: more than the 64 MiB cap. The first run's
    # calibration starts the OpenMP pool before the cap; the second's cache hit did not, and
    # libgomp aborted the process ("Thread creation failed") before the first case.
    args = [*ATTENTION, "--mem-limit", "64MiB", "--threads", "16"]
    for i, how in enumerate(("measured in", "cached, 16 threads")):
        out = run_cli(*args, "--out", str(tmp_path / f"run{i}"))
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert f"calibration (quick, {how}" in out.stdout
        assert "libgomp" not in out.stderr
        (record,) = load_results(tmp_path / f"run{i}" / "results.jsonl").records
        assert record.status == "ok"
        assert "intra-op pool of 16 threads started before it" in record.info["mem_limit"]


def test_the_pool_starts_before_the_cap_and_a_tiny_cap_does_not_kill(tmp_path):
    threads, _ = memory.start_intra_op_pool()
    assert threads == torch.get_num_threads()
    with memory.memory_cap(CPU, MIB) as how:  # 1 MiB beyond now: the next big tensor fails like an OOM, nothing dies
        assert f"intra-op pool of {threads} threads" in how
        with pytest.raises(RuntimeError, match="DefaultCPUAllocator"):
            torch.ones(64 * MIB // 4).add_(1)


# 2. option checks: one line, exit 2, nothing calibrated or written ------------------------


def _assert_refused(out: subprocess.CompletedProcess, fragment: str, tmp_path: Path, before: set[str]) -> None:
    assert out.returncode == 2, out.stdout[-1500:] + out.stderr[-1500:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xfbench: error: ") and fragment in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert {p.name for p in tmp_path.iterdir()} == before  # no run folder, no results, no cwd files
    assert not cache_dir().exists()  # never calibrated: the isolated cache folder was not even made


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """tmp_path as the working directory (an `--out ""` that slips through writes here, not in the repo),
    holding a file, a folder whose results.jsonl is a folder, and nothing else."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "dir" / "results.jsonl").mkdir(parents=True)
    return tmp_path


SHARED_REFUSALS = [
    (["--mem-limit", ""], "--mem-limit: '' is not a size"),
    (["--out", ""], "'--out': give a folder"),
    (["--out="], "'--out': give a folder"),
    (["--no-calibrate", "--recalibrate"], "--recalibrate contradicts --no-calibrate"),
    (["--device", "cpu:1"], "--device cpu:1: the CPU has no index"),
    (["--out", "afile"], "--out afile: is a file; give a folder"),
    (["--out", "dir"], "results.jsonl is not a file"),
    (["--out", "afile/sub"], "afile is a file, not a folder"),
    (["--snapshot-entries", str(10**20)], "'--snapshot-entries'"),  # past a C size_t: never reaches torch
    (["--out", "a" * 300], "File name too long"),
    (["--out", "/".join(["b" * 200] * 25)], "File name too long"),  # 5,024 bytes: past PATH_MAX
]


@pytest.mark.parametrize("extra, fragment", SHARED_REFUSALS, ids=[" ".join(a)[:40] for a, _ in SHARED_REFUSALS])
def test_bad_shared_options_are_refused_before_calibrating(workdir, extra, fragment):
    before = {p.name for p in workdir.iterdir()}
    _assert_refused(run_cli(*ATTENTION, *extra), fragment, workdir, before)


SHAPE_REFUSALS = [
    (["--batch", str(10**12)], "'--batch'"),
    (["--heads", str(10**9)], "'--heads'"),
    (["--head-dim", str(10**9)], "'--head-dim'"),
    # within every bound, but B*H*N*N = 2^20 * 2^16 * 2^32 = 2^68 elements: torch cannot count its bytes
    (["--impl", "naive", "--batch", str(2**20), "--heads", str(2**16), "--seq-lens", "65536"],
     "score matrix (B, H, N, N) = 1048576 x 65536 x 65536 x 65536"),
]


@pytest.mark.parametrize("extra, fragment", SHAPE_REFUSALS, ids=[a[1] for a, _ in SHAPE_REFUSALS])
def test_attention_shapes_are_bounded_like_the_sequence_lengths(workdir, extra, fragment):
    before = {p.name for p in workdir.iterdir()}
    _assert_refused(run_cli(*ATTENTION, "--out", "run", *extra), fragment, workdir, before)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["model", "--layers", "1", "--d-model", str(10**9), "--heads", "1"], "'--d-model'"),
        (["model", "--layers", "1", "--d-model", "8", "--heads", "1", "--vocab", str(10**13)], "'--vocab'"),
        (["model", "--presets", "1M", "--batch", str(10**12)], "'--batch'"),
        (["parallel", "--presets", "1M", "--heads", str(10**9), "--layers", "1", "--d-model", "8"], "'--heads'"),
    ],
)
def test_model_and_parallel_shapes_are_bounded(workdir, args, fragment):
    before = {p.name for p in workdir.iterdir()}
    _assert_refused(run_cli(*args, "--device", "cpu", "--out", "run", "--no-history"), fragment, workdir, before)


def test_a_model_whose_kv_cache_torch_cannot_count_is_refused_before_anything_is_built():
    # Every option within its bound; the decode cache (L, B, nh, P+M, hs) = 2^4 * 2^20 * 1 * 2^21 * 2^16 = 2^61
    # elements, past 2^60, while the logits (2^20 * 2^20 * 50304) and MLP activations (2^58) are within it: the
    # KV cache alone is refused. 16 layers, not 65536: the plan counts parameters on a meta model, layer by
    # layer (~100 s of CPU at 65536 layers), and 16 is as far past the bound as this test needs.
    kw = dict(presets=None, mode="decode", batch=2**20, seq_len=2**20, prompt_len=2**20, new_tokens=2**20,
              dtype="auto", compile=False, cuda_graphs=False, d_model=2**16, heads=1, vocab=None,
              flop_convention="full")
    with pytest.raises(BadInput, match=r"KV cache \(L, B, heads, P\+M, d/heads\) = 16 x 1048576 x 1 x 2097152 x 65536"):
        model_plan("cpu", layers=16, **kw)
    # at exactly 2^60 elements (8 layers) torch can still count the bytes: the same model is planned
    (case,) = model_plan("cpu", layers=8, **kw)
    assert case.params["n_layer"] == 8 and case.params["new_tokens"] == 2**20


def test_an_over_long_cache_dir_is_one_line_naming_the_variable(workdir):
    before = {p.name for p in workdir.iterdir()}
    out = run_cli(*ATTENTION, "--out", "run", env={CACHE_ENV: str(workdir / ("c" * 300))})
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{CACHE_ENV}=" in lines[0] and "File name too long" in lines[0]
    assert {p.name for p in workdir.iterdir()} == before


def test_a_cache_dir_that_is_a_file_is_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "file"))
    (tmp_path / "file").write_text("")
    with pytest.raises(BadInput, match=f"{CACHE_ENV}=.*a file is in the way"):
        load_or_calibrate(CPU, dtypes=["float32"], **TINY)


PLAN_REFUSALS = [
    (["--tokens-per-s", "inf"], "'--tokens-per-s'"),
    (["--tokens-per-param", "inf"], "'--tokens-per-param'"),
    (["--mfu", "0.5", "--peak-tflops", "inf"], "'--peak-tflops'"),
    (["--devices", str(10**12)], "'--devices'"),
    (["--seq-len", str(10**12), "--tokens-per-s", "1000"], "'--seq-len'"),
]


@pytest.mark.parametrize("extra, fragment", PLAN_REFUSALS, ids=[a[0] for a, _ in PLAN_REFUSALS])
def test_plan_refuses_infinite_and_absurd_numbers(workdir, extra, fragment):
    # `--tokens-per-s inf` printed a plan of "0 h".
    before = {p.name for p in workdir.iterdir()}
    _assert_refused(run_cli("plan", "--params", "1B", *extra), fragment, workdir, before)


@pytest.mark.parametrize("text", ["1e300", "1e16", "0.5"])
def test_plan_params_within_one_to_a_quadrillion(text):
    from xfbench.cli.plan import parse_count

    with pytest.raises(BadInput, match="--params"):
        parse_count(text)


def test_check_out_accepts_what_can_be_a_run_folder(tmp_path):
    parse.check_out(None)
    parse.check_out(tmp_path)  # an existing folder
    parse.check_out(tmp_path / "new" / "deeper")  # folders still to make
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.jsonl").write_text("")
    parse.check_out(tmp_path / "run")  # a results file: --resume's business, and --force's, not check_out's


@pytest.mark.parametrize("argv", [["run", "quick", "--out", ""], ["attention", "--out", ""],
                                  ["ab", "quick", "--a", "python", "--b", "python", "--out="]])
def test_an_empty_out_is_refused_in_process_too(workdir, argv):
    """The parser refuses '' where it is typed, not a look at sys.argv: an in-process caller (the
    property suites, a notebook) is refused like the command line, and nothing is written."""
    from typer.testing import CliRunner

    from xfbench.cli.main import app

    before = {p.name for p in workdir.iterdir()}
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2 and "'--out': give a folder" in res.output, res.output
    assert {p.name for p in workdir.iterdir()} == before


def test_shape_bounds_are_the_suite_files_and_the_peak_bound_the_calibrations():
    from xfbench.cli import suite_file

    assert (parse.MAX_LEN, parse.MAX_DIM) == (suite_file.MAX_LEN, suite_file.MAX_DIM) == (1 << 20, 1 << 16)
    assert parse.MAX_PEAK_TFLOPS * 1e12 == cc.FLOP_PER_S_BOUNDS[1]
    with pytest.raises(BadInput, match="more than any device"):
        parse.parse_peak_tflops(1e7)


# 3. a calibration cache outside physical bounds --------------------------------------------


def _plant(path: Path, edit) -> None:
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))


def _set_flops(value):
    def edit(raw):
        raw["matmul"]["float32"]["flop_per_s"] = value
    return edit


def _set_bandwidth(value):
    def edit(raw):
        raw["bandwidth"]["read"]["bytes_per_s"] = value
    return edit


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (_set_flops(1.0), "matmul.float32.flop_per_s = 1 FLOP/s, outside the physical bounds"),
        (_set_flops(1e300), "matmul.float32.flop_per_s = 1e+300 FLOP/s, outside the physical bounds"),
        (_set_bandwidth(1e300), "bandwidth.read.bytes_per_s = 1e+300 B/s, outside the physical bounds"),
        (_set_bandwidth(0.5), "bandwidth.read.bytes_per_s = 0.5 B/s"),
        (_set_bandwidth(0), "bandwidth.read.bytes_per_s"),  # these three were refused before too
        (_set_bandwidth(-1e10), "bandwidth.read.bytes_per_s"),
        (_set_bandwidth(float("nan")), "bandwidth.read.bytes_per_s"),
    ],
)
def test_a_cache_claiming_impossible_figures_is_measured_again(edit, fragment):
    # The file in the isolated XFBENCH_CACHE_DIR, where every sweep looks for it.
    first = load_or_calibrate(CPU, dtypes=["float32"], **TINY)
    assert first.path == cache_path(calibration_key(CPU))
    _plant(first.path, edit)
    again = load_or_calibrate(CPU, dtypes=["float32"], **TINY)
    assert not again.reused and "float32" in again.measured and "read" in again.measured
    (note,) = [n for n in again.notes if "is corrupt" in n]
    assert fragment in note and note.endswith("recalibrating")
    lo, hi = cc.FLOP_PER_S_BOUNDS
    assert lo <= again.calibration.peak("float32") <= hi
    lo, hi = cc.BYTES_PER_S_BOUNDS
    assert lo <= again.calibration.bytes_per_s("read") <= hi
    assert load_or_calibrate(CPU, dtypes=["float32"], **TINY).reused  # the rewritten file is good


def test_a_sweep_says_it_recalibrates_past_an_impossible_cache(tmp_path):
    first = run_cli(*ATTENTION, "--out", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    (path,) = cache_dir().glob("calibration-*.json")
    _plant(path, _set_flops(1e300))
    out = run_cli(*ATTENTION, "--out", str(tmp_path / "b"))
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # the console wraps long notes
    assert "1e+300 FLOP/s, outside the physical bounds" in text and "(quick, measured" in text
    assert math.isfinite(json.loads(path.read_text())["matmul"]["float32"]["flop_per_s"])


# 5. Ctrl-C says what it interrupted ----------------------------------------------------------


def test_an_interrupt_gets_a_message_and_keeps_a_deeper_one():
    with pytest.raises(KeyboardInterrupt, match="^plan interrupted: nothing lost$"):
        with parse.interrupt_says("plan interrupted: nothing lost"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt, match="^interrupted while calibrating$"):
        with parse.interrupt_says("outer"):
            with parse.interrupt_says("interrupted while calibrating"):
                raise KeyboardInterrupt


def test_ctrl_c_during_a_calibration_says_what_it_measured_and_that_the_cache_is_unchanged():
    # A real SIGINT from another thread, as a terminal's Ctrl-C: the full CPU calibration takes seconds.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            timer.start()
            load_or_calibrate(CPU, dtypes=["float32", "bfloat16"], level="full")
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    message = str(info.value)
    assert message.startswith("interrupted while calibrating cpu (float32 matmul, bfloat16 matmul, read bandwidth")
    assert "nothing was lost" in message
    assert not cache_path(calibration_key(CPU)).exists()


def _interrupt_after(args: list[str], seconds: float, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([XFBENCH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=cwd)
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_ctrl_c_during_env_calibrate_is_one_line_saying_nothing_was_lost(tmp_path):
    out = _interrupt_after(["env", "--calibrate", "--device", "cpu"], 5.0, tmp_path)
    assert out.returncode == 130
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xfbench: ") and "interrupted" in lines[0], out.stderr
    assert "nothing was lost" in lines[0], out.stderr


# Refused in the command's body before its sweep's imports: torch is never loaded for them.
REFUSED_BEFORE_TORCH = [
    (["attention", "--seq-lens", "abc"], "--seq-lens"),
    (["attention", "--impl", "nope"], "--impl"),
    (["model", "--mode", "x"], "--mode"),
    (["run", "no-such-suite.toml"], "no suite file"),
    (["run", "quick", "--resume"], "--resume needs --out"),
]


@pytest.mark.parametrize("argv,words", REFUSED_BEFORE_TORCH)
def test_a_bad_option_string_is_refused_before_torch_is_imported(tmp_path, argv, words):
    """A typo is told at once (0.2-0.5 s here), not after the ~2 s of importing torch: the app, run in a
    fresh interpreter, refuses it with exit 2 and torch is not in sys.modules."""
    import sys

    probe = ("import sys\nfrom xfbench.cli.main import app\n"
             f"sys.argv = ['xfbench', *{argv!r}]\n"
             "try:\n    app()\nexcept SystemExit as e:\n    print('EXIT', e.code, 'torch' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "NO_COLOR": "1"})
    assert words in res.stderr, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "EXIT 2 False", res.stdout + res.stderr
