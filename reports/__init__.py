"""Self-contained HTML reports of a run and a browsable index of the store."""
