"""New lines only from a polled log tail (Azure ML's ``getLogs`` returns the last N lines each time)."""

from __future__ import annotations


class LogFollower:
    """``feed(tail_text)`` returns the lines not seen in the previous tail, in order.

    The new tail overlaps the previous one by up to N lines: the longest suffix of what was seen that is a
    prefix of the new tail is skipped. With no overlap (more than N lines arrived, or the container restarted
    with different output) the whole tail is new.
    """

    def __init__(self) -> None:
        self._seen: list[str] = []
        self.total = 0

    def feed(self, text: str) -> list[str]:
        lines = [line.rstrip("\r") for line in (text or "").splitlines()]
        seen = self._seen
        overlap = 0
        for k in range(min(len(seen), len(lines)), 0, -1):
            if seen[-k:] == lines[:k]:
                overlap = k
                break
        new = lines[overlap:]
        if lines:
            self._seen = lines
        self.total += len(new)
        return new

    @property
    def last(self) -> list[str]:
        return list(self._seen)
