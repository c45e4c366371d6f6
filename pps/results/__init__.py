"""Stage 6, results: the typed run result, tables, and the results directory on disk."""
