"""xfbench: benchmark and profile transformer workloads (attention, model scale, data parallelism)."""

# Keep this module free of imports: `xfbench --help` and `--version` must start fast.
__version__ = "0.1.0"
