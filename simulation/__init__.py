"""The simulated world: CLI, experiment config and runner, accounting, reports, benchmarks."""
