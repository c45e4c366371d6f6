"""Fixtures of the system tests: the AF_XDP core tests' namespaces (tests/xsk_pair.py)."""

from xsk_pair import needs_af_xdp, pair  # noqa: F401  (fixtures, found by name)
