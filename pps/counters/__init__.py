"""Stage 5, counters: collectors, the sampler that keeps raw captures, counter tables and the drop ledger."""
