"""Property-based tests of suite files and results files (issue 12, "Property-based tests").

Suite files: random bytes or text as FILE.toml, and mutations of the built-in suites that make each
one invalid (wrong types, unknown and missing keys, huge numbers, NaN, controls in names, bad
thresholds, unknown workloads, presets and implementations), run as `xfbench run FILE --out DIR`:
exit 2, one line, DIR never made, nothing written.

Results files: a run folder whose results.jsonl is random bytes, or a fixture of each schema version
mutated (fields of the wrong JSON type or removed, schema versions from the future, the past or not
integers, huge numbers, NaN/Infinity literals, controls and unicode in labels, truncated and extra
lines), read by `report DIR`, `report DIR --markdown -`, `compare DIR OTHER` and a tiny
`attention --out DIR --resume` (fake clock). Each may be tolerated (exit 0; compare 1 on a
regression; the sweep 3 on a failed case) or refused (exit 2, one line, nothing written); never a
traceback, and no control character from the file reaches the output raw.

XFBENCH_PROPERTY_EXAMPLES sets the examples per test (500 for the issue's goal).
"""

from __future__ import annotations

import json
import math
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from xfbench.cli.suite_file import builtin_suites, parse_suite
from xfbench.reports.errors import BadInput

from .property_support import CONTROL, PROPERTY_SETTINGS, UNICODE, run_and_check

FIXTURES = Path(__file__).parent / "fixtures"
RESULT_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.jsonl"))  # schema versions 1 to 4
SUITES = {name: tomllib.loads(text) for name, text in builtin_suites().items()}
# What makes a suite run cheap should a mutation the strategy meant to be refused be taken.
RUN_CHEAP = ["--device", "cpu", "--max-time", "0", "--no-history", "--no-html", "--threads", "1"]


# --- TOML out of a dict (tomllib reads only) -------------------------------------------------------


def _toml_key(k: str) -> str:
    return k if k and all(c.isascii() and (c.isalnum() or c in "-_") for c in k) else _toml_str(k)


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:  # TOML text is UTF-8: a lone surrogate has no spelling
            out.append("\\ufffd")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(data: dict) -> str:
    """Inline tables everywhere: any value of any type can sit at any key."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in data.items())


def test_to_toml_round_trips_every_builtin_suite():
    for data in SUITES.values():
        assert tomllib.loads(to_toml(data)) == data


# --- suite mutations that are certainly refused ---------------------------------------------------

NAME_BAD = ["", "-x", "a b", "a\x1b]0;x\x07", "é", "x" * 101, "a/b", ".hidden", "🙂"]
THRESHOLD_BAD = ["abc", "-5%", "0%", "200%", "nan%", "inf%", "0ms", "-2ms", "5", 0, -0.1, 2.0, math.nan, math.inf,
                 True, [], {}, "5 %%", "2 parsecs"]
NOT_A_FIELD_VALUE = [{"x": 1}, [{"x": 1}], {"": {}}]  # no key of a suite takes a table
INT_FIELDS = {"threads": (1, 4096), "batch": (1, 1 << 20), "heads": (1, 1 << 16), "head_dim": (1, 1 << 16),
              "seq_len": (1, 1 << 20), "layers": (1, 1 << 16), "profile_top": (1, 100)}
FLOAT_FIELDS = {"target_ci": (0, 1), "max_time": (0, 86400), "pg_timeout": (1, 86400), "case_timeout": (1, 604800)}
BOOL_FIELDS = ["memory", "count_flops", "calibrate", "telemetry", "profile", "isolate", "html", "markdown", "csv",
               "causal", "compile"]


def _sections(data: dict) -> list[tuple[str, ...]]:
    """Paths of the tables of a suite: (), ('run',), ('compare',), ('output',), ('cases', i)."""
    out: list[tuple] = [()]
    out += [(k,) for k in ("run", "compare", "output") if isinstance(data.get(k), dict)]
    out += [("cases", i) for i in range(len(data.get("cases", [])))]
    return out


def _at(data: dict, path: tuple) -> Any:
    for p in path:
        data = data[p]
    return data


@st.composite
def refused_mutation(draw, data: dict) -> str:
    """Change `data` (in place) in one way the suite format refuses; returns what was done."""
    sections = _sections(data)
    section = draw(st.sampled_from(sections))
    table = _at(data, section)
    case_paths = [s for s in sections if s and s[0] == "cases"]
    kind = draw(st.sampled_from(["unknown key", "missing", "table value", "number", "threshold", "name",
                                 "workload", "choice", "duplicate", "section type", "case type"]))
    if kind == "unknown key":
        key = draw(st.sampled_from(["colour", "max_tim", "Name", "seq-lens", "", "\x1b[2J", "é", "cases2"]))
        if key in table:
            key += "_x"
        table[key] = draw(st.sampled_from([1, "x", True, [1], {"a": 1}]))
    elif kind == "missing":
        path = draw(st.sampled_from([("cases",), *[(*c, "name") for c in case_paths],
                                     *[(*c, "workload") for c in case_paths]]))
        del _at(data, path[:-1])[path[-1]]
    elif kind == "table value":
        keys = [k for k, v in table.items() if not isinstance(v, dict | list) or k in ("seq_lens", "impl", "mode")]
        if not keys:
            return draw(refused_mutation(data))
        table[draw(st.sampled_from(sorted(keys)))] = draw(st.sampled_from(NOT_A_FIELD_VALUE))
    elif kind == "number":
        fields = {**INT_FIELDS, **FLOAT_FIELDS}
        key = draw(st.sampled_from(sorted(fields)))
        data.setdefault("run", {})
        if key == "pg_timeout":  # a parallel case's own key: one such case takes the first case's place
            data["cases"][0] = {"name": "p", "workload": "parallel"}
            where: tuple = ("cases", 0)
        elif key in ("threads", "profile_top", "case_timeout"):
            where = ("run",)
        elif key in ("target_ci", "max_time"):
            where = draw(st.sampled_from([("run",), *case_paths]))
        else:
            where = draw(st.sampled_from(case_paths))
            case = _at(data, where)
            allowed = {"attention": {"batch", "heads", "head_dim"}, "model": {"batch", "seq_len", "layers", "heads"},
                       "parallel": {"batch", "seq_len", "layers", "heads"}}[case["workload"]]
            if key not in allowed:
                key = sorted(allowed)[0]
        # the bad values of the key finally chosen (65537 is past heads' bound but a valid batch: a
        # random draw once ran attention at batch 65537, and the kernel's OOM killer ended the tests)
        low, high = fields[key]
        bad = [low - 1, high + 1, 10**30, -(10**30), 2**63, math.inf, -math.inf, math.nan, "abc", [1, 2], high * 10.0]
        if key in INT_FIELDS:
            bad.append(1.5)
        _at(data, where)[key] = draw(st.sampled_from(bad))
        return f"{kind} {where}.{key}"
    elif kind == "threshold":
        where = draw(st.sampled_from([("compare",), *case_paths]))
        data.setdefault("compare", {})
        _at(data, where)["threshold"] = draw(st.sampled_from(THRESHOLD_BAD))
    elif kind == "name":
        where = draw(st.sampled_from([(), *case_paths]))
        _at(data, where)["name"] = draw(st.sampled_from(NAME_BAD))
    elif kind == "workload":
        if not case_paths:
            return draw(refused_mutation(data))
        _at(data, draw(st.sampled_from(case_paths)))["workload"] = draw(
            st.sampled_from(["nope", "", "Attention", "attention\x1b", 1, ["attention"], {}]))
    elif kind == "choice":
        if not case_paths:
            return draw(refused_mutation(data))
        case = _at(data, draw(st.sampled_from(case_paths)))
        key = {"attention": "impl", "model": "presets", "parallel": "strategy"}[case["workload"]]
        key = draw(st.sampled_from([key, "dtype", "mode"] if case["workload"] != "parallel" else [key, "dtype"]))
        case[key] = draw(st.sampled_from(["nope", ["nope"], "", [], "sdpa;naive", "\x1b]0;x\x07", ["1M", "nope"]]))
    elif kind == "duplicate":
        if not case_paths:
            return draw(refused_mutation(data))
        data["cases"].append(dict(data["cases"][0]))
    elif kind == "section type":
        data[draw(st.sampled_from(["run", "compare", "output", "cases"]))] = draw(st.sampled_from(["x", 1, [1], True]))
    elif kind == "case type":
        data["cases"] = draw(st.sampled_from([[], ["attention"], [1], [[]], {"attention": {}}]))
    return kind


def _well_formed(data: dict) -> bool:
    """True if `data` still has a suite's shape (tables where tables go, cases with a known workload),
    which refused_mutation needs to find its way."""
    cases = data.get("cases")
    return (all(isinstance(data.get(k, {}), dict) for k in ("run", "compare", "output"))
            and isinstance(cases, list) and bool(cases)
            and all(isinstance(c, dict) and c.get("workload") in ("attention", "model", "parallel")
                    and isinstance(c.get("name"), str) for c in cases))


BOOL_NOISE = [True, False, 0, 1, "yes"]


@st.composite
def noise(draw, data: dict) -> None:
    """Changes that may or may not be valid: a description with controls or unicode, odd booleans."""
    if draw(st.booleans()):
        data["description"] = draw(st.sampled_from(CONTROL + UNICODE + ["x" * 5000, "", "\\"]))
    if draw(st.booleans()) and isinstance(data.get("output"), dict):
        data["output"][draw(st.sampled_from(["html", "markdown", "csv"]))] = draw(st.sampled_from(BOOL_NOISE))


@st.composite
def refused_suite(draw) -> tuple[str, str]:
    """(TOML text of an invalid suite, what makes it invalid)."""
    data = json.loads(json.dumps(SUITES[draw(st.sampled_from(sorted(SUITES)))]))  # a deep copy
    draw(noise(data))
    what = [draw(refused_mutation(data))]
    if draw(st.booleans()) and _well_formed(data):  # a second one, on a suite the first left in shape
        what.append(draw(refused_mutation(data)))
    return to_toml(data), "; ".join(what)


def _run_suite(text: str | bytes) -> None:
    def seed(cwd: Path) -> None:
        target = cwd / "suite.toml"
        target.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))

    out = run_and_check(["run", "suite.toml", "--out", "DIR", *RUN_CHEAP], (2,), seed=seed)
    assert "DIR" not in out.new


@PROPERTY_SETTINGS
@given(refused_suite())
@example(("[run]\nmax_time = 1e400\n[[cases]]\nname = \"a\"\nworkload = \"attention\"\n", "max_time inf"))
def test_a_mutated_suite_file_is_refused_in_one_line(suite):
    text, _what = suite
    _run_suite(text)


@PROPERTY_SETTINGS
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")),
                 # a built-in suite cut anywhere, then a key no table takes: a cut after a whole case would
                 # otherwise be a valid suite (and run)
                 st.sampled_from(list(builtin_suites().values())).flatmap(
                     lambda t: st.integers(0, len(t) - 1).map(lambda n: (t[:n] + "\nzz_unknown = 1\n").encode()))))
@example(b"\xff\xfe[[cases]]")
@example(b"")
def test_random_bytes_as_a_suite_file_are_refused_in_one_line(data):
    _run_suite(data)


# Bugs in cli/suite_file.py (not this task's to change): kept apart so the properties above hold
# and these turn green when fixed.


def test_an_infinite_absolute_threshold_is_refused():
    # '1e400ms' read as infinite seconds was taken: every change passed the gate
    data = json.loads(json.dumps(SUITES["quick"]))
    data["compare"]["threshold"] = "1e400ms"
    with pytest.raises(BadInput, match="threshold"):
        parse_suite(to_toml(data), "suite.toml", "suite")


# --- results files -------------------------------------------------------------------------------

RAW = "\x00raw:"  # a string value this prefix marks is written as the raw JSON text after it


def _paths(obj: Any, prefix: tuple = (), depth: int = 0) -> list[tuple]:
    out = []
    if depth > 4:
        return out
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out += _paths(v, (*prefix, k), depth + 1)
    return out


HOSTILE_JSON = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1.5, "", "x", [], {}, [1, "a"], {"a": None}, 10**30, -(10**400),
                     f"{RAW}NaN", f"{RAW}Infinity", f"{RAW}-Infinity", f"{RAW}1e400", f"{RAW}-1e999", f"{RAW}1E+308",
                     f"{RAW}" + "9" * 400, f"{RAW}[[[[[[[[[[]]]]]]]]]]", "é" * 50, "\udcff"]),
    st.sampled_from(CONTROL + UNICODE).map(lambda s: f"label {s} end"),
    st.floats(allow_nan=False, allow_infinity=False), st.integers(),
)
VERSIONS = [0, -1, 5, 99, 10**30, 3.5, "3", None, True, [4], "4", 2.0]


def _dump(obj: Any) -> bytes:
    """One JSON line; RAW-marked strings as their raw text, a lone surrogate as (invalid) UTF-8 bytes."""
    raws = []

    def mark(s: str) -> str:
        raws.append(s[len(RAW):])
        return f"__raw{len(raws) - 1}__"

    def walk(o: Any) -> Any:
        if isinstance(o, str) and o.startswith(RAW):
            return mark(o)
        if isinstance(o, dict):
            return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    text = json.dumps(walk(obj), ensure_ascii=False, separators=(",", ":"))
    for i, raw in enumerate(raws):
        text = text.replace(f'"__raw{i}__"', raw)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutated_results(draw) -> bytes:
    """A fixture of some schema version with one to three damages."""
    lines = (FIXTURES / draw(st.sampled_from(RESULT_FIXTURES))).read_text(encoding="utf-8").splitlines()
    objs: list[Any] = [json.loads(x) for x in lines]
    raw_lines: dict[int, bytes] = {}
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(objs) - 1))
        kind = draw(st.sampled_from(["set", "set", "delete", "version", "truncate", "extra", "bytes", "drop header"]))
        obj = objs[i]
        if kind in ("set", "delete") and isinstance(obj, dict):
            paths = _paths(obj)
            path = draw(st.sampled_from(paths))
            parent = obj
            for p in path[:-1]:
                parent = parent[p]
            if kind == "set":
                parent[path[-1]] = draw(HOSTILE_JSON)
            else:
                del parent[path[-1]]
        elif kind == "version":
            header = next((o for o in objs if isinstance(o, dict) and o.get("kind") == "header"), None)
            if header is not None:
                header["schema_version"] = draw(st.sampled_from(VERSIONS))
        elif kind == "truncate":
            text = _dump(obj)
            raw_lines[i] = text[: draw(st.integers(0, max(0, len(text) - 1)))]
        elif kind == "extra":
            first = dict(objs[0]) if isinstance(objs[0], dict) else {"kind": "header"}  # a second header
            objs.insert(draw(st.integers(0, len(objs))), draw(st.one_of(HOSTILE_JSON, st.just(first),
                                                                        st.just({"kind": "record"}))))
            raw_lines = {}
        elif kind == "bytes":
            raw_lines[i] = draw(st.binary(max_size=60))
        elif kind == "drop header":
            del objs[0]
            raw_lines = {}
            if not objs:
                objs = [{}]
    out = [raw_lines.get(i, _dump(o)) for i, o in enumerate(objs)]
    end = draw(st.sampled_from([b"\n", b"", b"\n\n", b"\r\n"]))
    return b"\n".join(out) + end


RESULTS = st.one_of(mutated_results(), mutated_results(), st.binary(max_size=300))


def _results_folder(data: bytes, other: str = "results_v3.jsonl"):
    def seed(cwd: Path) -> None:
        (cwd / "DIR").mkdir()
        (cwd / "DIR" / "results.jsonl").write_bytes(data)
        (cwd / "OTHER").mkdir()
        shutil.copy(FIXTURES / other, cwd / "OTHER" / "results.jsonl")

    return seed


@PROPERTY_SETTINGS
@given(RESULTS)
@example(b'{"kind":"header","schema_version":99}\n')
@example(b"NaN\n")
def test_report_of_a_damaged_results_file(data):
    run_and_check(["report", "DIR"], (0, 2), seed=_results_folder(data))


@PROPERTY_SETTINGS
@given(RESULTS)
def test_report_markdown_of_a_damaged_results_file(data):
    run_and_check(["report", "DIR", "--markdown", "-"], (0, 2), seed=_results_folder(data), may_write_on_success=False)


@PROPERTY_SETTINGS
@given(RESULTS, st.sampled_from(RESULT_FIXTURES))
def test_compare_with_a_damaged_results_file(data, other):
    run_and_check(["compare", "DIR", "OTHER"], (0, 1, 2), seed=_results_folder(data, other),
                  may_write_on_success=False)


RESUME = ["attention", "--out", "DIR", "--resume", "--fake-clock", "--no-calibrate", "--seq-lens", "64",
          "--impl", "sdpa", "--heads", "2", "--head-dim", "16", "--device", "cpu", "--max-time", "0.05",
          "--no-history", "--no-html", "--no-memory", "--no-telemetry"]


@PROPERTY_SETTINGS
@given(RESULTS)
def test_resume_into_a_damaged_results_file(data):
    run_and_check(RESUME, (0, 2, 3), seed=_results_folder(data))
