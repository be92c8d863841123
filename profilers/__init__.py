"""How things are measured: timer, statistics, memory, environment, device specifics."""
