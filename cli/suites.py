"""`xfbench suites`: the built-in suites, what each runs, and how many cases."""

import typer

from .status import ExitStatus


def suites(
    show: str | None = typer.Argument(None, help="Print this built-in suite's TOML (a template for your own)."),
) -> ExitStatus:
    """List the built-in suites (`xfbench run NAME`); with a name, print its TOML."""
    from ..reports.errors import BadInput
    from .console import make_console
    from .suite_file import builtin_suites, parse_suite

    texts = builtin_suites()
    console = make_console()
    if show is not None:
        if show not in texts:
            raise BadInput(f"no built-in suite '{show}' (built-in: {', '.join(texts)})")
        console.print(texts[show], markup=False, highlight=False, end="")
        return ExitStatus.OK
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("suite", "suite cases", "threshold", "what it runs"):
        table.add_column(col)
    for name, text in texts.items():
        spec = parse_suite(text, f"builtin:{name}", name)
        cases = ", ".join(f"{c.name} ({c.workload})" for c in spec.cases)
        table.add_row(name, cases, spec.compare.threshold.text(), spec.description)
    console.print(table)
    console.print("run one: xfbench run NAME [--repeat K]; your own: xfbench run FILE.toml "
                  "(xfbench suites NAME prints a template)", markup=False)
    return ExitStatus.OK
