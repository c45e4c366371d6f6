"""Stage 4, run: one pipeline over a list of hosts; trial, worker groups, workers, agent, wire protocol."""
