"""The one error type for input a user can fix. Import-free, so the CLI can catch it cheaply."""


class BadInput(Exception):
    """Bad options, suite or results files, or environment: one line, exit code 2."""
