"""One module per synthetic-user generator of the bundled benchmark (see tasks.benchmark)."""
