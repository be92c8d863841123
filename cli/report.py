"""`xfbench report`: render a results file again, as any of the reports, from the file alone."""

from pathlib import Path

import typer

from .status import ExitStatus

FIGURE_FORMATS = ("pdf", "svg", "png")


def files_base(run_dir: Path, dest: Path) -> str | None:
    """How an HTML report written to `dest` reaches the run folder, for its links to the profiler's
    files (named relative to the run folder): '' when it is written into the run folder, a relative
    path when elsewhere, None on stdout (no folder to be relative to: the paths are shown as text)."""
    import os

    from ..reports.writer import STDOUT

    if str(dest) == STDOUT:
        return None
    try:
        rel = os.path.relpath(run_dir.resolve(), dest.resolve().parent)
    except ValueError:  # another drive (Windows): no relative path
        return None
    return "" if rel == "." else Path(rel).as_posix()


def report(
    source: Path = typer.Argument(..., help="A run folder (holding results.jsonl) or a results file."),
    html: Path | None = typer.Option(None, "--html", help="Write the self-contained HTML report here ('-': stdout)."),
    figures: Path | None = typer.Option(None, "--figures", help="Write every figure into this folder."),
    formats: str = typer.Option("pdf,svg,png", "--format", help="Figure formats with --figures: pdf, svg, png."),
    dpi: int = typer.Option(200, "--dpi", min=20, max=1200, help="Resolution of PNG figures (dots per inch)."),
    latex: Path | None = typer.Option(None, "--latex", help="Write the tables as LaTeX (booktabs) here ('-': stdout)."),
    csv: Path | None = typer.Option(None, "--csv", help="Write one CSV row per record here ('-': stdout)."),
    markdown: Path | None = typer.Option(
        None, "--markdown", help="Write the summary and tables as Markdown here ('-': stdout)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Overwrite outputs that exist (without it an existing file is refused; the run's own "
        "report.html is always rendered again).",
    ),
    raw_data: str = typer.Option(
        "auto", "--raw-data",
        help="The HTML's raw-data appendix: json (every record), samples, none, or auto (json up to 1 MB).",
    ),
) -> ExitStatus:
    """Render a results file as HTML, figures, LaTeX, CSV or Markdown (default: tables + report.html)."""
    from ..reports.errors import BadInput
    from ..reports.html import RAW_DATA
    from ..reports.render import generated_utc, render
    from ..reports.store import REPORT_NAME, RESULTS_NAME, load_results
    from ..reports.writer import STDOUT, refuse_existing, refuse_existing_figures, write_files, write_output
    from .console import make_console
    from .parse import parse_choices

    picked = parse_choices(formats, FIGURE_FORMATS, "--format")
    if raw_data not in ("auto", *RAW_DATA):
        raise BadInput(f"--raw-data: unknown value '{raw_data}' (choose from auto, {', '.join(RAW_DATA)})")
    outputs = {"html": html, "latex": latex, "csv": csv, "markdown": markdown}
    to_stdout = [name for name, dest in outputs.items() if dest is not None and str(dest) == STDOUT]
    if len(to_stdout) > 1:
        raise BadInput(f"only one report can go to stdout ('-'), not {', '.join('--' + n for n in to_stdout)}")
    run_dir = source if source.is_dir() else source.parent
    # Every output is checked before anything is read or drawn: a refused one writes nothing.
    refuse_existing([(f"--{n}", d) for n, d in outputs.items()], force=force, keep=(run_dir / REPORT_NAME,))
    refuse_existing_figures(figures, picked, force=force)
    if html is not None or figures is not None or all(dest is None for dest in outputs.values()):
        from ..reports.figures import warm_up

        warm_up()  # matplotlib loads on the other core while this one reads the results
    run = load_results(source)  # BadInput: one line, exit 2
    # Lines about what was written go to stderr when a report itself goes to stdout.
    console = make_console(stderr=bool(to_stdout))
    stamp = generated_utc()
    built: dict[str, str] = {}
    if all(dest is None for dest in outputs.values()) and figures is None:
        from ..reports.document import build_document
        from ..reports.html import render_document
        from ..reports.terminal import print_document

        doc = build_document(run, stamp)  # once, for the terminal and the HTML
        print_document(doc, console)
        outputs["html"], built["html"] = run_dir / REPORT_NAME, render_document(doc, raw_data=raw_data)
    for name, dest in outputs.items():
        if dest is None:
            continue
        opts = {"generated_utc": stamp} if name in ("html", "latex", "markdown") else {}
        if name == "html":
            opts["raw_data"] = raw_data
            opts["files_base"] = files_base(run_dir, dest)
        written = write_output(built[name] if name in built else render(name, run, **opts), dest)
        if written is not None:
            console.print(f"{name}: {written} ({written.stat().st_size:,} bytes)", markup=False)
    if figures is not None:
        from ..reports.figures import render_figures

        paths = write_files(render_figures(run, picked, dpi), figures)
        if not paths:
            console.print(f"figures: none (no figure applies to the records in {run_dir / RESULTS_NAME})",
                          markup=False)
        else:
            console.print(f"figures: {len(paths)} files in {figures} ({', '.join(picked)})", markup=False)
    return ExitStatus.OK
