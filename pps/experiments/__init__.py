"""Stage 7, experiments: sweeps, searches, comparisons and history over many runs."""
