"""A run's results: summary.json from the stored state, statistics, report.md and plots."""
