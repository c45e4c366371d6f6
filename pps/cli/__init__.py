"""The command line: one command table, one exit-code table, one set of shared options."""
