"""`xfbench compare BASELINE CURRENT`: case by case, the change, its CI, a test, a verdict; exit 1 on a regression."""

from pathlib import Path

import typer

from .status import ExitStatus
from .suite_options import AllowDifferentEnv, Alpha, NoiseK, RunsAlpha


def compare(
    baseline: Path | None = typer.Argument(
        None, help="The baseline run folder or results file (with --against-history: leave it out)."
    ),
    current: Path | None = typer.Argument(None, help="The current run folder or results file."),
    threshold: str | None = typer.Option(
        None, "--threshold",
        help="Smallest change that counts: '5%' (relative) or '2ms' (time) [default: each suite case's, else 5%].",
    ),
    metric: str | None = typer.Option(
        None, "--metric", help="time, tokens_per_s or peak_mem [default: the suite's, else time]."
    ),
    alpha: Alpha = 0.002,
    runs_alpha: RunsAlpha = 0.01,
    noise_k: NoiseK = 1.0,
    markdown: Path | None = typer.Option(None, "--markdown", help="Write the comparison as Markdown ('-': stdout)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the comparison as JSON ('-': stdout)."),
    github_benchmark: Path | None = typer.Option(
        None, "--github-benchmark", help="Write CURRENT in github-action-benchmark's custom JSON format here."
    ),
    allow_different_env: AllowDifferentEnv = False,
    force: bool = typer.Option(
        False, "--force", help="Overwrite --markdown/--json/--github-benchmark files that exist."
    ),
    against_history: bool = typer.Option(
        False, "--against-history", help="Compare CURRENT with the last --last runs of each case on this machine."
    ),
    last: int = typer.Option(30, "--last", min=2, max=10000, help="Past runs the history band is made of."),
    db: Path | None = typer.Option(None, "--db", help="History database [default: user data folder]."),
    history_noise: bool = typer.Option(
        True, "--history-noise/--no-history-noise",
        help="Without repeats on both sides, widen each case's gate by its history band (when the db has one).",
    ),
) -> ExitStatus:
    """Compare two runs case by case: change with CI, Mann-Whitney p, verdict; exit 1 on a regression."""
    from ..reports.errors import BadInput
    from .console import make_console

    if against_history:
        if current is None and baseline is not None:
            baseline, current = None, baseline
        if baseline is not None:
            raise BadInput("--against-history compares one run (CURRENT) with the history: give one run folder")
        if current is None:
            raise BadInput("--against-history needs the run to compare: xfbench compare --against-history RUN")
    elif baseline is None or current is None:
        raise BadInput("compare needs BASELINE and CURRENT (run folders or results files), or --against-history RUN")
    return compare_and_report(
        baseline, current, console=make_console(), threshold=threshold, metric=metric, alpha=alpha,
        runs_alpha=runs_alpha, noise_k=noise_k, markdown=markdown, json_out=json_out, github_benchmark=github_benchmark,
        allow_different_env=allow_different_env, against_history=against_history, last=last, db=db,
        history_noise=history_noise, force=force,
    )


def compare_and_report(
    baseline: Path | None, current: Path, *, console, threshold: str | None = None, metric: str | None = None,
    alpha: float = 0.002, runs_alpha: float = 0.01, noise_k: float = 1.0, markdown: Path | None = None,
    json_out: Path | None = None, github_benchmark: Path | None = None, allow_different_env: bool = False,
    against_history: bool = False, last: int = 30, db: Path | None = None, history_noise: bool = True,
    names: tuple[str, str] | None = None, force: bool = False,
) -> ExitStatus:
    """Load, compare, print, export; the exit code (1: a regression). `xfbench ab` ends here too."""
    from ..reports import compare as cmp_lib
    from ..reports import compare_export
    from ..reports.errors import BadInput
    from ..reports.store import load_results
    from ..reports.terminal import print_table
    from ..reports.writer import STDOUT, refuse_existing, write_output
    from .parse import parse_choices

    outputs = (("--markdown", markdown), ("--json", json_out), ("--github-benchmark", github_benchmark))
    refuse_existing(outputs, force=force)  # before anything is loaded: a refused command writes nothing
    to_stdout = [n for n, d in outputs if d is not None and str(d) == STDOUT]
    if len(to_stdout) > 1:
        raise BadInput(f"only one output can go to stdout ('-'), not {', '.join(to_stdout)}")
    cur = load_results(current)
    if metric is not None:
        from ..reports.between_runs import METRICS

        picked = parse_choices(metric, tuple(METRICS), "--metric")
        if len(picked) != 1:
            raise BadInput(f"--metric: give one of {', '.join(METRICS)}")
        metric = picked[0]
    else:
        metric = _suite_metric(cur)
    user_threshold = _threshold(threshold) if threshold is not None else None
    if against_history:
        from ..reports.compare_history import compare_with_history
        from ..reports.history import History, default_db_path

        path = db or default_db_path()
        if not path.exists():
            raise BadInput(f"no history database at {path} (`xfbench run` records every suite run there; or give --db)")
        with History(path) as h:
            result = compare_with_history(cur, h, metric=metric, last=last, threshold=_rel(user_threshold),
                                          thresholds=_suite_thresholds(cur, user_threshold, None, metric))
        where = f"{current} against the history ({h.path})"
    else:
        base = load_results(baseline)
        noise = _history_noise(base, cur, metric, db, last) if history_noise else None
        result = cmp_lib.compare(
            base, cur, metric=metric, threshold=_rel(user_threshold), alpha=alpha, runs_alpha=runs_alpha,
            noise_k=noise_k,
            history_noise=noise, allow_different_env=allow_different_env,
            thresholds=_suite_thresholds(cur, user_threshold, base, metric),
        )
        a, b = names or ("baseline", "current")
        where = f"{b} {current} against {a} {baseline}"
    quiet = bool(to_stdout)
    out = console if not quiet else _stderr_console()
    out.print(f"compare {metric}: {where}", markup=False)
    print_table(cmp_lib.comparison_table(result), out)
    for w in result.warnings:
        out.print(f"warning: {w}", markup=False)
    for c in result.cases:  # the reason behind each verdict that is not a plain 'same'
        if c.verdict == "inconclusive":
            out.print(f"inconclusive: {c.name}: {c.why}", markup=False)
    for c in result.regressions:
        out.print(f"regression: {c.name}: {c.text}", markup=False)
    for f in result.failed:
        out.print(f"regression: {f}", markup=False)
    if markdown is not None:
        _write(write_output, compare_export.to_markdown(result), markdown, out, "markdown")
    if json_out is not None:
        _write(write_output, compare_export.to_json(result), json_out, out, "json")
    if github_benchmark is not None:
        _write(write_output, compare_export.github_benchmark(cur, metric), github_benchmark, out,
               "github-action-benchmark")
    out.print(compare_export.headline(result), markup=False)
    return ExitStatus.REGRESSION if result.failing else ExitStatus.OK


def _stderr_console():
    from .console import make_console

    return make_console(stderr=True)


def _write(write_output, text: str, dest: Path, console, what: str) -> None:
    path = write_output(text, dest)
    if path is not None:
        console.print(f"{what}: {path}", markup=False)


def _threshold(text: str):
    from ..reports.errors import BadInput
    from .suite_file import parse_threshold

    text = text.strip()
    try:
        return parse_threshold(float(text) if text.replace(".", "", 1).isdigit() else text)
    except ValueError as e:
        raise BadInput(f"--threshold: {e}") from None


def _rel(th) -> float:
    """The relative threshold applied where a case has none of its own (5% unless the user gave one)."""
    from ..reports.compare import DEFAULT_THRESHOLD

    return th.rel if th is not None and th.rel is not None else DEFAULT_THRESHOLD


def _suite_metric(run) -> str:
    metrics = {(h.model_extra or {}).get("suite", {}).get("metric") for h in run.headers}
    metrics.discard(None)
    return metrics.pop() if len(metrics) == 1 else "time"


def _suite_thresholds(cur, user, base, metric: str) -> dict[str, float]:
    """case_id -> relative threshold: the user's --threshold for every case, else each suite case's (from
    the header of the segment that measured it). An absolute time threshold becomes relative to the
    baseline's median (the current's when there is no baseline)."""
    from ..reports.between_runs import repeats

    ref = repeats(base if base is not None else cur, "time")
    out: dict[str, float] = {}
    for r in cur.records:
        th = user
        if th is None:
            spec = ((cur.header_of(r).model_extra or {}).get("suite") or {}).get("threshold")
            th = _header_threshold(spec)
            if th is None:
                continue
        if th.rel is not None:
            out[r.case_id] = th.rel
        elif metric == "time" and r.case_id in ref:
            out[r.case_id] = th.abs_s / ref[r.case_id].median
    if user is not None and user.abs_s is not None and metric != "time":
        from ..reports.errors import BadInput

        raise BadInput(f"--threshold {user.text()}: an absolute threshold is a time; --metric {metric} needs a '%'")
    return out


def _header_threshold(spec):
    """A suite case's threshold as its segment's header recorded it (None if absent or unreadable:
    the default then applies)."""
    from .suite_file import Threshold

    if not isinstance(spec, dict):
        return None
    try:
        th = Threshold.model_validate({k: spec.get(k) for k in ("rel", "abs_s")})
    except ValueError:
        return None
    return th if th.rel is not None or th.abs_s is not None else None


def _history_noise(base, cur, metric: str, db, last: int) -> dict:
    """case_id -> HistoryNoise from the history database (reports.compare_history.history_noise); empty
    when there is no database, and, with a warning, when it cannot be read: history only widens gates."""
    import sqlite3
    import sys

    from ..reports.compare_history import history_noise
    from ..reports.errors import BadInput
    from ..reports.history import History, default_db_path

    path = db or default_db_path()
    if not path.exists():
        return {}
    try:
        with History(path) as h:
            return history_noise(h, base, cur, metric, last)
    except (sqlite3.Error, BadInput) as e:
        from ..reports.sanitize import printable

        print(printable(f"xfbench: warning: history noise not used ({e})", lines=False), file=sys.stderr)
        return {}
