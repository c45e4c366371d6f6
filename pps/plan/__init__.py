"""Stage 3, plan: which worker runs where, on which CPU, with which flows (pure, no I/O)."""
