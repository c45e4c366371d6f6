"""pps: how many small UDP packets per second a host sends and receives, and where the rest died."""

__version__ = "0.1.0"
