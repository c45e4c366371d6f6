"""Stage 1, config: experiment files and --set values -> a validated, frozen Config."""
