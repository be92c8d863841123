"""Suite files: the built-in suites load and plan; every malformed suite is one clear line, exit 2."""

from __future__ import annotations

import inspect

import pytest

from tests.conftest import run_cli
from xfbench.cli import attention as attention_cli
from xfbench.cli import model as model_cli
from xfbench.cli import parallel as parallel_cli
from xfbench.cli.suite_file import (
    AttentionCase,
    ModelCase,
    ParallelCase,
    Threshold,
    builtin_suites,
    case_plan,
    load_suite,
    parse_suite,
    parse_threshold,
)
from xfbench.cli.suite_run import SuiteOverrides, suite_plans
from xfbench.reports.errors import BadInput

CASE = '[[cases]]\nname = "a"\nworkload = "attention"\n'

# (what is wrong, the suite's text, what the one line must say): the malformed-suite table.
MALFORMED = [
    ("not TOML", "this is = = not toml", "s.toml: not valid TOML: "),
    ("empty file", "", "s.toml: empty suite: it needs at least one [[cases]] table"),
    ("no cases", 'name = "x"\n', "s.toml: cases: missing key"),
    ("zero cases", "cases = []\n", "s.toml: cases: List should have at least 1 item"),
    ("[[case]] for [[cases]]", '[[case]]\nname = "a"\nworkload = "attention"\n', "s.toml: case: unknown key"),
    ("unknown top-level key", "colour = 1\n" + CASE, "s.toml: colour: unknown key"),
    ("unknown [run] key", '[run]\ndevices = "cpu"\n' + CASE, "s.toml: run.devices: unknown key"),
    ("unknown case key", CASE + "seqlens = [128]\n", "s.toml: cases[0].seqlens: unknown key"),
    ("unknown workload", '[[cases]]\nname = "a"\nworkload = "conv"\n',
     "s.toml: cases[0]: unknown workload 'conv' (choose from attention, model, parallel)"),
    ("no workload", '[[cases]]\nname = "a"\n', "s.toml: cases[0]: missing key 'workload'"),
    ("wrong type", CASE + 'batch = "two"\n', "s.toml: cases[0].batch: Input should be a valid integer"),
    ("wrong type (bool)", CASE + 'causal = "yes please"\n', "s.toml: cases[0].causal: Input should be a valid boolean"),
    ("negative length", CASE + "seq_lens = [128, -5]\n",
     "s.toml: cases[0].seq_lens[1]: Input should be greater than 0"),
    ("zero heads", CASE + "heads = 0\n", "s.toml: cases[0].heads: Input should be greater than 0"),
    ("huge length", CASE + "seq_lens = [10000000000]\n", "s.toml: cases[0].seq_lens[0]: Input should be less than"),
    ("bad range", CASE + 'seq_lens = "1:x"\n', "s.toml: cases[0] 'a': --seq-lens: range '1:x' must be"),
    ("unknown impl", CASE + 'impl = ["fast"]\n', "s.toml: cases[0] 'a': --impl: unknown value 'fast'"),
    ("unknown preset", '[[cases]]\nname = "m"\nworkload = "model"\npresets = "3M"\n',
     "s.toml: cases[0] 'm': --presets: unknown preset '3M'"),
    ("half a custom model", '[[cases]]\nname = "m"\nworkload = "model"\nlayers = 2\n',
     "s.toml: cases[0] 'm': a custom model needs --layers, --d-model and --heads"),
    ("duplicate case names", CASE + '[[cases]]\nname = "a"\nworkload = "model"\n',
     "s.toml: cases[1]: duplicate case name 'a'"),
    ("threshold 500%", '[compare]\nthreshold = "500%"\n' + CASE,
     "s.toml: compare.threshold: 500% is outside (0%, 100%]"),
    ("negative threshold", CASE + "threshold = -0.05\n", "s.toml: cases[0].threshold: -5% is outside (0%, 100%]"),
    ("threshold not a threshold", CASE + 'threshold = "fast"\n',
     "s.toml: cases[0].threshold: 'fast' is not a threshold"),
    ("unknown metric", '[compare]\nmetric = "speed"\n' + CASE, "s.toml: compare.metric: Input should be 'time'"),
    ("bad case name", '[[cases]]\nname = "a b"\nworkload = "attention"\n',
     "s.toml: cases[0].name: String should match"),
    ("same case twice", CASE + '[[cases]]\nname = "b"\nworkload = "attention"\n',
     "s.toml: cases 'a' and 'b' both run attention"),
    ("snapshot entries past the bound", "[run]\nsnapshot_entries = 100000000000000000000\n" + CASE,
     "s.toml: run.snapshot_entries: Input should be less than or equal to 10000000"),
]


@pytest.mark.parametrize("what, text, expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_suite_is_one_line_naming_file_key_and_problem(what, text, expected):
    with pytest.raises(BadInput) as err:
        suite = parse_suite(text, "s.toml", "s")
        suite_plans(suite, SuiteOverrides(device="cpu"))
    message = str(err.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_malformed_suite_files_exit_2_with_one_line(tmp_path):
    """Through the CLI, a few of the table's rows: exit 2, one line on stderr, nothing run. The first in a
    real process (the console script, as a user runs it: ~3 s, most of it importing torch); the rest
    through the same app in this process (CliRunner: the same main() that maps BadInput to the one
    line and exit 2), where a traceback would be an exception other than SystemExit."""
    from typer.testing import CliRunner

    from xfbench.cli.main import app

    for i, (_, text, expected) in enumerate(MALFORMED[:4] + MALFORMED[12:13] + MALFORMED[19:21]):
        path = tmp_path / f"s{i}.toml"
        path.write_text(text)
        args = ["run", str(path), "--out", str(tmp_path / f"run{i}"), "--no-history"]
        if i == 0:
            out = run_cli(*args)
            code, stderr = out.returncode, out.stderr
        else:
            res = CliRunner().invoke(app, args)
            assert isinstance(res.exception, SystemExit), res.exception  # no exception reached the user
            code, stderr = res.exit_code, res.stderr
        assert code == 2, stderr
        assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
        assert stderr.startswith(f"xfbench: error: {path}: "), stderr
        assert expected.removeprefix("s.toml: ") in stderr
        assert not (tmp_path / f"run{i}").exists()


def test_missing_suite_names_the_builtins(tmp_path):
    out = run_cli("run", "nope")
    assert out.returncode == 2
    assert "no built-in suite 'nope'" in out.stderr and "quick" in out.stderr
    out = run_cli("run", str(tmp_path / "absent.toml"))
    assert out.returncode == 2 and "no suite file at" in out.stderr


@pytest.mark.parametrize("name", sorted(builtin_suites()))
def test_builtin_suites_load_and_plan(name):
    suite = load_suite(name)
    plans = suite_plans(suite, SuiteOverrides(device="cpu"))
    assert all(plans) and suite.name == name and suite.source == f"builtin:{name}"


def test_builtin_suite_names():
    assert {"quick", "why-transformers", "attention-scaling", "model-scaling", "parallel-scaling"} <= set(
        builtin_suites())
    why = load_suite("why-transformers")
    assert {c.workload for c in why.cases} == {"attention", "model", "parallel"}
    assert "lstm" in why.cases[0].impl


def test_suite_case_options_are_the_commands_own():
    """A suite case's keys are its command's option names: one vocabulary, and case_plan calls the
    command's own plan function with them."""
    for model, command in ((AttentionCase, attention_cli.attention), (ModelCase, model_cli.model),
                           (ParallelCase, parallel_cli.parallel)):
        own = set(model.model_fields) - {"name", "workload", "threshold", "target_ci", "max_time", "memory",
                                         "count_flops"}
        params = set(inspect.signature(command).parameters)
        assert own <= params, own - params


def test_case_plan_matches_the_command_defaults():
    """Options a case leaves out take the command's defaults: the same cases as the command's plan."""
    suite = parse_suite(CASE + 'seq_lens = [128, 256]\nimpl = "naive"\n', "s.toml", "s")
    cases = case_plan(suite, 0, "cpu")
    same = attention_cli.attention_plan(
        "cpu", seq_lens="128,256", impl="naive", mode="fwd", batch=1, heads=8, head_dim=64, dtype="auto",
        causal=False,
    )
    assert [c.id for c in cases] == [c.id for c in same]


@pytest.mark.parametrize("text, expected", [
    ("5%", Threshold(rel=0.05)), (0.05, Threshold(rel=0.05)), ("100%", Threshold(rel=1.0)), (1, Threshold(rel=1.0)),
    ("2ms", Threshold(abs_s=0.002)), ("500us", Threshold(abs_s=0.0005)), ("1.5 s", Threshold(abs_s=1.5)),
])
def test_parse_threshold(text, expected):
    got = parse_threshold(text)
    assert got.rel == pytest.approx(expected.rel) if expected.rel else got.abs_s == pytest.approx(expected.abs_s)


@pytest.mark.parametrize("text", ["0%", "101%", 0, -1, "ms", True, "5 %%", "-2ms"])
def test_parse_threshold_refuses(text):
    with pytest.raises(ValueError):
        parse_threshold(text)


def test_per_case_settings_override_the_suite():
    suite = parse_suite('[run]\nmax_time = 3.0\n[compare]\nthreshold = "5%"\n' + CASE
                        + 'threshold = "10%"\nmax_time = 0.5\n', "s.toml", "s")
    from xfbench.cli.suite_run import shared_options

    shared = shared_options(suite, 0, suite_out := __import__("pathlib").Path("/tmp/x"), SuiteOverrides(), False)
    assert shared.max_time == 0.5 and shared.out == suite_out
    assert suite.threshold_of(suite.cases[0]) == Threshold(rel=0.10)
    assert shared_options(suite, 0, suite_out, SuiteOverrides(max_time=0.1), False).max_time == 0.1
