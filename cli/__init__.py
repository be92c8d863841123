"""Command-line interface: one module per Typer command."""
