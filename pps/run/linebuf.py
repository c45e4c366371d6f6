"""Bytes in, complete lines out: for the agent's JSON-lines protocol, on both of its ends.

Each byte is looked at once (a partial line is kept as a list of pieces, joined once when its
newline comes), so a peer that sends a long line in small pieces costs linear time, not the
quadratic cost of re-splitting a growing buffer. A line longer than the limit is not kept at
all: the reader stops and says so, and its owner ends the conversation.
"""

from __future__ import annotations

import os


class LineBuffer:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.too_long = False  # set once a line passed the limit; nothing more is taken
        self._pieces: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines that `chunk` completes, without their newlines, in order. Lines before
        an over-long one are returned; from it on, nothing is."""
        lines: list[bytes] = []
        start = 0
        while not self.too_long:
            newline = chunk.find(b"\n", start)
            end = len(chunk) if newline < 0 else newline
            self._size += end - start
            if self._size > self.limit:
                self.too_long = True
                self._pieces, self._size = [], 0
                break
            if newline < 0:
                if end > start:
                    self._pieces.append(chunk[start:])
                break
            self._pieces.append(chunk[start:newline])
            lines.append(b"".join(self._pieces))
            self._pieces, self._size = [], 0
            start = newline + 1
        return lines

    @property
    def pending(self) -> int:
        """Bytes of the line not yet complete."""
        return self._size


def read_available(fd: int, lines: LineBuffer) -> list[bytes]:
    """Every complete line readable now on a non-blocking pipe (stops at an over-long one)."""
    out: list[bytes] = []
    while not lines.too_long:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        out += lines.feed(chunk)
    return out
