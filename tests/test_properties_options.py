"""Property-based tests of every command's options (issue 12, "Property-based tests").

Each example is a command line built from the command's real options (read from the app itself):
some valid values, hostile values on other options (odd numbers, huge ints, NaN, controls, unicode,
over-long paths), and at least one value that is certainly invalid, so no example measures anything.
Every example must end in exit 2 with one line `xfbench: error: ...`, write nothing, and show no
traceback. `plan` and `suites` are pure: their valid examples print and exit 0.

XFBENCH_PROPERTY_EXAMPLES sets the examples per test (500 for the issue's goal).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import typer
from hypothesis import example, given
from hypothesis import strategies as st

from xfbench.cli.main import COMMANDS, app

from .property_support import PROPERTY_SETTINGS, hostile_text, run_and_check

FIXTURE = Path(__file__).parent / "fixtures" / "results_v3.jsonl"
UNKNOWN = "--xfbench-no-such-option"


def seed(cwd: Path) -> None:
    """What every example may point at: a file (`afile`), two valid run folders (base/, cur/)."""
    (cwd / "afile").write_text("not a folder\n")
    for name in ("base", "cur"):
        (cwd / name).mkdir()
        shutil.copy(FIXTURE, cwd / name / "results.jsonl")


@dataclass(frozen=True)
class Opt:
    """One option of a command as the app defines it."""

    names: tuple[str, ...]  # --x and its --no-x
    flag: bool
    kind: type  # int, float, str, Path, bool
    low: float | None
    high: float | None


@cache
def options(command: str) -> dict[str, Opt]:
    """The options of `command` (hidden test-only ones left out), by their first name."""
    cmd = typer.main.get_command(app).get_command(None, command)
    out = {}
    for p in cmd.params:
        if p.param_type_name != "option" or p.hidden:
            continue
        kind = p.type_descriptor.annotation
        out[p.opts[0]] = Opt(tuple(p.opts + p.secondary_opts), bool(p.is_flag), kind,
                             getattr(p, "min", None), getattr(p, "max", None))
    return out


# --- values that are certainly refused -----------------------------------------------------------

NOT_A_NUMBER = ["abc", "", "nan", "NaN", "\x1b]0;x\x07", "🙂", "x" * 300, "1,5", "--", "1e3e3"]
NOT_AN_INT = NOT_A_NUMBER + ["1.5", "1e3", "0x10", "inf", "-inf", "١٢", "True"]


def out_of_range(opt: Opt) -> list[str]:
    """Values of a numeric option that its bounds (or its type) refuse."""
    bad = list(NOT_AN_INT if opt.kind is int else NOT_A_NUMBER)
    if opt.low is not None:
        bad += [str(opt.low - 1) if opt.kind is int else repr(opt.low - abs(opt.low) * 0.5 - 1e-3), "-inf",
                str(-(10**30))]
    if opt.high is not None:
        bad += [str(int(opt.high) + 1) if opt.kind is int else repr(opt.high * 2 + 1), "inf", str(10**30)]
    if opt.kind is float and (opt.low is not None or opt.high is not None):
        bad += ["nan", "-nan"]  # a bounded float refuses NaN (it is within no range)
    return bad


def certainly_bad(command: str) -> st.SearchStrategy[list[str]]:
    """Tokens that make `command`'s line invalid whatever else it holds: a numeric option out of its
    range, a flag given a value, an unknown option, and the command's own refused values (SPECS)."""
    opts = options(command)
    families: list[st.SearchStrategy[list[str]]] = [st.just([UNKNOWN]), st.just([UNKNOWN, "1"])]
    numeric = [o for o in opts.values() if o.kind in (int, float) and (o.low is not None or o.high is not None)]
    if numeric:
        families.append(st.sampled_from(numeric).flatmap(
            lambda o: st.sampled_from(out_of_range(o)).map(lambda v, o=o: [o.names[0], v])))
        families.append(st.sampled_from(numeric).flatmap(  # the --x=VALUE spelling
            lambda o: st.sampled_from(out_of_range(o)).map(lambda v, o=o: [f"{o.names[0]}={v}"])))
    flags = [o for o in opts.values() if o.flag]
    if flags:
        families.append(st.sampled_from(flags).flatmap(
            lambda o: st.sampled_from(["1", "yes", "", "\x1b[2J"]).map(lambda v, o=o: [f"{o.names[0]}={v}"])))
    spec = SPECS[command]
    for opt, values in spec.bad.items():
        families.append(st.sampled_from(values).map(lambda v, opt=opt: [opt, v]))
    for combo in spec.bad_combos:
        families.append(st.just(list(combo)))
    return st.one_of(families)


# --- each command's valid values, refused values and positional arguments --------------------------

SWEEP_VALID = {
    "--device": ["cpu"], "--max-time": ["0.05", "0"], "--target-ci": ["0.5"], "--threads": ["1"],
    "--mem-limit": ["1GiB"], "--out": ["fresh-run"], "--no-calibrate": [None], "--no-html": [None],
    "--no-history": [None], "--no-telemetry": [None], "--no-memory": [None], "--dtype": ["float32"],
}
OUT_BAD = ["afile", "afile/sub", "x" * 256, "a/" * 2100 + "b", "base/results.jsonl"]
SWEEP_BAD = {
    "--device": ["tpu", "cpu:1", "", "cuda:x", "\x1b]0;x\x07", "🙂", "cpu,cuda"],
    "--dtype": ["float7", "", "int8", "float32\x1b"],
    "--mem-limit": ["abc", "", "0", "-1GiB", "1.5.5GB", "5.GB", "1_000", "١٢", "2EiB", "9" * 40, "nan", "\x1b[2J"],
    "--out": OUT_BAD,
}
SWEEP_COMBOS = [
    ("--force", "--resume"), ("--recalibrate", "--no-calibrate"), ("--out", ""), ("--out=",),
    ("--profile", "--profile-schedule", "1,1"), ("--profile", "--profile-schedule", "0,0,0"),
    ("--profile", "--profile-schedule", "a,b,c"), ("--profile", "--profile-schedule", "50,50,50"),
    ("--peak-tflops", "nan"), ("--peak-tflops", "-1"), ("--peak-tflops", "inf"), ("--peak-tflops", "1e7"),
    ("--peak-tflops", "0"),
]
CHEAP = ("--device", "cpu", "--max-time", "0", "--no-calibrate", "--no-memory", "--no-html", "--no-history",
         "--no-telemetry", "--threads", "1")
SEQ_BAD = ["0", "-5", "abc", "64:32:x2", "1:100000:+1", "64:128:x1", "64:128", "", ",", "3000000000", "1:2:3",
           "\x1b]0;x\x07", "64:128:x" + "9" * 40, "64;128"]
COUNT_BAD = ["0", "abc", "", "-1", "nan", "inf", "1e400", "1e16", "\u202e1B", "1.3 B B"]


@dataclass(frozen=True)
class Spec:
    valid: dict[str, list[str | None]] = field(default_factory=dict)  # option -> values (None: a flag)
    bad: dict[str, list[str]] = field(default_factory=dict)  # option -> values it certainly refuses
    bad_combos: list[tuple[str, ...]] = field(default_factory=list)  # token groups certainly refused
    positional: st.SearchStrategy[list[str]] = st.just([])
    allowed: tuple[int, ...] = (2,)  # exit codes an example may end with
    needs_bad: bool = True  # False: a valid line is cheap (pure computation), so none is forced
    # Given first on every line (a later value of the same option wins): should a line the strategy
    # meant to be refused be taken, the sweep it starts is one tiny case, not the defaults' minutes.
    cheap: tuple[str, ...] = ()
    quiet: tuple[str, ...] = ()  # options never drawn as noise (--force: it makes an existing output valid)


SPECS: dict[str, Spec] = {
    "attention": Spec(
        valid={**SWEEP_VALID, "--seq-lens": ["64", "32,64"], "--impl": ["sdpa"], "--mode": ["fwd"],
               "--heads": ["2"], "--head-dim": ["16"], "--batch": ["1"], "--causal": [None]},
        bad={**SWEEP_BAD, "--seq-lens": SEQ_BAD, "--impl": ["nope", "", ",", "sdpa;naive", "sdpa\x1b"],
             "--mode": ["bwd", "", "fwd,bwd"]},
        bad_combos=[*SWEEP_COMBOS, ("--seq-lens", "1048576", "--batch", "1048576", "--heads", "64", "--impl", "naive"),
                    ("--seq-lens", "1048576", "--heads", "65536", "--head-dim", "65536", "--batch", "1048576")],
        cheap=(*CHEAP, "--seq-lens", "32", "--impl", "sdpa", "--heads", "1", "--head-dim", "8"),
    ),
    "model": Spec(
        valid={**SWEEP_VALID, "--presets": ["1M"], "--mode": ["prefill"], "--batch": ["1"], "--seq-len": ["8"]},
        bad={**SWEEP_BAD, "--presets": ["nope", "", "1M;10M", "\x1b[2J", "1M,nope"],
             "--mode": ["bogus", "", "train;prefill"], "--flop-convention": ["half", "", "full,causal\x07"]},
        bad_combos=SWEEP_COMBOS,
        cheap=(*CHEAP, "--presets", "1M", "--mode", "prefill", "--batch", "1", "--seq-len", "8"),
    ),
    "parallel": Spec(
        valid={**SWEEP_VALID, "--presets": ["1M"], "--strategy": ["single"], "--world-sizes": ["1"],
               "--batch": ["1"], "--seq-len": ["8"], "--collectives": ["none"]},
        bad={**SWEEP_BAD, "--presets": ["nope", ""], "--strategy": ["zero", "", "ddp;fsdp"],
             "--world-sizes": ["0", "abc", "100000", "", "1:9999999:+1"], "--scaling": ["weak,strong", "x", ""],
             "--collectives": ["nope", "all_reduce,\x1b"], "--message-sizes": ["abc", "0", "-1", "1.5.5GB", "2EiB"]},
        # without a collective no size is needed: an empty list is refused only with one
        bad_combos=[*SWEEP_COMBOS, ("--collectives", "all_reduce", "--message-sizes", ","),
                    ("--collectives", "all_gather", "--message-sizes", ""),
                    ("--print-launch", "--mem-limit", "abc"), ("--print-launch", "--presets", "nope"),
                    ("--print-launch", "--dtype", "float7"), ("--print-launch", "--force", "--resume")],
        cheap=(*CHEAP, "--presets", "1M", "--strategy", "single", "--world-sizes", "1", "--collectives", "none",
               "--batch", "1", "--seq-len", "8"),
    ),
    "plan": Spec(
        valid={"--params": ["1.3B", "350M", "124e6", "7b", "1000000"], "--tokens-per-param": ["20", "1"],
               "--seq-len": ["1024"], "--layers": ["12"], "--d-model": ["768"], "--flop-convention": ["full", "causal"],
               "--tokens-per-s": ["1e5"], "--mfu": ["0.4"], "--peak-tflops": ["100"], "--devices": ["8"]},
        bad={"--params": COUNT_BAD, "--flop-convention": ["half", ""], "--results": ["afile", "nowhere", ""]},
        allowed=(0, 2), needs_bad=False,
    ),
    "doctor": Spec(
        valid={"--device": ["cpu"], "--threads": ["1"], "--no-calibrate": [None], "--json": [None]},
        bad={"--device": SWEEP_BAD["--device"]},
        bad_combos=[("--recalibrate", "--no-calibrate")],
        cheap=("--no-calibrate", "--seconds", "0.5"),
    ),
    "env": Spec(
        valid={"--device": ["cpu"], "--threads": ["1"], "--json": [None]},
        bad={"--device": SWEEP_BAD["--device"], "--peak-tflops": ["nan", "-1", "inf", "0", "1e7", "abc"]},
    ),
    "ab": Spec(
        valid={"--a": ["/nonexistent/python-a"], "--b": ["/nonexistent/python-b"], "--rounds": ["1"],
               "--device": ["cpu"], "--out": ["fresh-ab"], "--metric": ["time"], "--threshold": ["5%"]},
        bad={"--a": ["/nonexistent/python", "", "afile", "/"], "--b": ["/nonexistent/python", "", "."],
             "--threshold": ["abc", "-5%", "nan%", "", "inf"], "--metric": ["bogus", ""],
             "--device": SWEEP_BAD["--device"]},
        positional=st.sampled_from([["quick"], ["nosuch"], ["afile"], ["base/results.jsonl"], ["x.toml"],
                                    ["\x1b]0;x\x07"], ["x" * 300]]),
    ),
    "compare": Spec(
        valid={"--metric": ["time"], "--threshold": ["5%", "2ms"], "--alpha": ["0.01"],
               "--allow-different-env": [None]},
        bad={"--threshold": ["abc", "-5%", "nan%", "", "inf", "5%%", "\x1b[2J"], "--metric": ["bogus", ""]},
        quiet=("--force",),
        positional=st.sampled_from([["base", "cur"], ["base", "nowhere"], ["nowhere", "cur"], ["afile", "cur"],
                                    ["base", "x" * 300], ["base", "a/" * 2100], ["base"], []]),
    ),
    "history": Spec(
        valid={"--last": ["5"], "--metric": ["time"], "--case": ["naive"]},
        bad={"--metric": ["bogus", "", "time\x1b"], "--db": ["afile", "nowhere.sqlite", "x" * 300],
             "--html": ["afile", "x" * 300]},
        quiet=("--force",),
    ),
    "run": Spec(
        valid={"--out": ["fresh-run"], "--device": ["cpu"], "--max-time": ["0.05"], "--no-history": [None],
               "--no-html": [None], "--repeat": ["1"], "--threads": ["1"]},
        bad={"--out": OUT_BAD, "--device": SWEEP_BAD["--device"]},
        bad_combos=[("--force", "--resume")],
        cheap=("--device", "cpu", "--max-time", "0", "--no-history", "--no-html", "--threads", "1"),
        positional=st.sampled_from([["quick"], ["nosuch"], ["afile"], ["x.toml"], ["base/results.jsonl"], [""],
                                    ["\x1b]0;x\x07"], ["x" * 300 + ".toml"]]),
    ),
    "suites": Spec(
        positional=st.one_of(st.sampled_from([[], ["quick"], ["model-scaling"], ["nosuch"], [""], ["\x1b]0;x\x07"],
                                              ["x" * 5000], ["quick", "extra"]]),
                             st.lists(hostile_text(), min_size=1, max_size=2)),
        allowed=(0, 2), needs_bad=False,
    ),
    "report": Spec(
        valid={"--raw-data": ["none"], "--format": ["svg"], "--dpi": ["50"]},
        bad={"--format": ["bmp", "", "svg;png"], "--raw-data": ["bogus", ""], "--markdown": ["afile", "x" * 300],
             "--csv": ["afile"], "--html": ["afile"]},
        cheap=("--raw-data", "none"),
        quiet=("--force",),
        positional=st.sampled_from([["base"], ["nowhere"], ["afile"], ["x" * 300], ["a/" * 2100], [""]]),
    ),
}
# `report base` with nothing refused would render a report (slow, and writes): every report line holds a
# refused token; the sources nowhere/afile/... are refused on their own.


def _valid_pairs(spec: Spec, skip: set[str]) -> st.SearchStrategy[list[list[str]]]:
    items = [(o, v) for o, vs in spec.valid.items() if o not in skip for v in vs]
    if not items:
        return st.just([])
    return st.lists(st.sampled_from(items), max_size=6, unique_by=lambda ov: ov[0]).map(
        lambda ovs: [[o] if v is None else [o, v] for o, v in ovs])


def _hostile_pairs(command: str, skip: set[str]) -> st.SearchStrategy[list[list[str]]]:
    """Other options with hostile values (valid or not: the certainly refused tokens decide)."""
    opts = [o for o in options(command).values() if not (skip | set(SPECS[command].quiet)) & set(o.names)]
    if not opts:
        return st.just([])

    def pair(o: Opt):
        if o.flag:
            return st.sampled_from(o.names).map(lambda n: [n])
        return hostile_text().map(lambda v, o=o: [o.names[0], v])

    return st.lists(st.sampled_from(opts).flatmap(pair), max_size=3)


@st.composite
def command_line(draw, command: str) -> list[str]:
    """[command, positional..., options...] with at least one certainly refused token (unless the
    command is pure), options in a random order."""
    spec = SPECS[command]
    bad: list[list[str]] = []
    if spec.needs_bad or draw(st.booleans()):
        bad = [draw(certainly_bad(command)) for _ in range(draw(st.integers(1, 2)))]
    taken = {t.split("=")[0] for group in bad for t in group if t.startswith("--")}
    # the refused value must be the last of its option (click keeps the last one), so the others leave
    # its option alone; a repeated option: a valid value of it first, the refused one after
    rest = draw(_valid_pairs(spec, taken)) + draw(_hostile_pairs(command, taken))
    rest = draw(st.permutations(rest)) if rest else rest
    repeat = [[o, v] for o, vs in spec.valid.items() if o in taken for v in vs if v is not None][:1]
    if repeat and draw(st.booleans()):
        rest = repeat + rest
    for group in bad:
        rest.insert(draw(st.integers(len(repeat), len(rest))) if rest else 0, group)
    tokens = [t for group in rest for t in group]
    return [command, *draw(spec.positional), *spec.cheap, *tokens]


def _check(argv: list[str], command: str) -> None:
    run_and_check(argv, SPECS[command].allowed, seed=seed)


def test_every_command_has_a_spec():
    assert set(SPECS) == set(COMMANDS)


# One test per command (the issue: "over option strings for every command").


@PROPERTY_SETTINGS
@given(command_line("attention"))
@example(["attention", "--no-memory", "--mem-limit", "1.5.5GB"])  # was a 1-byte cap and a real sweep (exit 3)
@example(["attention", "--mem-limit", "5.GB", "--seq-lens", "64"])  # was 5 bytes
@example(["attention", "--mem-limit", "1_000", "--seq-lens", "64"])  # int() took the underscore
def test_attention_options(argv):
    _check(argv, "attention")


@PROPERTY_SETTINGS
@given(command_line("model"))
def test_model_options(argv):
    _check(argv, "model")


@PROPERTY_SETTINGS
@given(command_line("parallel"))
@example(["parallel", *SPECS["parallel"].cheap, "--presets", ""])  # was the default (1M): a whole sweep ran
@example(["parallel", "--print-launch", "--mem-limit", "abc"])  # was exit 0: only 3 options were checked
@example(["parallel", "--print-launch", "--device", "tpu"])
@example(["parallel", "--print-launch", "--presets", "nope", "--peak-tflops", "nan"])
def test_parallel_options(argv):
    _check(argv, "parallel")


@PROPERTY_SETTINGS
@given(command_line("plan"))
def test_plan_options(argv):
    _check(argv, "plan")


@PROPERTY_SETTINGS
@given(command_line("doctor"))
def test_doctor_options(argv):
    _check(argv, "doctor")


@PROPERTY_SETTINGS
@given(command_line("env"))
@example(["env", "--device", "tpu"])  # was exit 0: --device was only read with --calibrate
def test_env_options(argv):
    _check(argv, "env")


@PROPERTY_SETTINGS
@given(command_line("ab"))
def test_ab_options(argv):
    _check(argv, "ab")


@PROPERTY_SETTINGS
@given(command_line("compare"))
def test_compare_options(argv):
    _check(argv, "compare")


@PROPERTY_SETTINGS
@given(command_line("history"))
def test_history_options(argv):
    _check(argv, "history")


@PROPERTY_SETTINGS
@given(command_line("run"))
@example(["run", "quick", *SPECS["run"].cheap, "--device", ""])  # was the suite's device: the suite ran
def test_run_options(argv):
    _check(argv, "run")


@PROPERTY_SETTINGS
@given(command_line("suites"))
def test_suites_options(argv):
    _check(argv, "suites")


@PROPERTY_SETTINGS
@given(command_line("report"))
def test_report_options(argv):
    _check(argv, "report")


# Random tokens: option names of the command, hostile values, valid values, in any order. Two unknown
# options at the end keep every line invalid (one may be taken as the value of the option before it).


@st.composite
def random_tokens(draw) -> list[str]:
    command = draw(st.sampled_from(sorted(COMMANDS)))
    names = sorted({n for o in options(command).values() for n in o.names})
    valid = sorted({v for vs in SPECS[command].valid.values() for v in vs if v is not None})
    token = st.one_of(*([st.sampled_from(names)] if names else []), hostile_text(),
                      *([st.sampled_from(valid)] if valid else []),
                      st.sampled_from(["--", "-", "=", UNKNOWN, "base", "afile"]))
    return [command, *SPECS[command].cheap, *draw(st.lists(token, max_size=10)), UNKNOWN, UNKNOWN]


@PROPERTY_SETTINGS
@given(random_tokens())
def test_random_tokens_of_any_command(argv):
    run_and_check(argv, (2,), seed=seed)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_line_strategy_holds_a_refused_token(command):
    """The strategies' own check: SPECS names only real options."""
    names = {n for o in options(command).values() for n in o.names}
    spec = SPECS[command]
    for opt in [*spec.valid, *spec.bad, *(t for c in spec.bad_combos for t in c if t.startswith("--"))]:
        assert opt.split("=")[0] in names, (command, opt)
