"""Reports: the Record schema, results store, and renderers (terminal, tables)."""
