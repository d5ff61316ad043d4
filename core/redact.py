"""Secret redaction shared by every layer that prints: settings register their secret values here and
events, logs and error details pass through :func:`redact` before they leave the core."""

from __future__ import annotations

import re
import threading

MASK = "••••••"
_lock = threading.Lock()
_secrets: set[str] = set()

# Header-style secrets that may appear in SDK error text even if their value was never registered: as
# ``Name: value``, ``name=value``, or quoted as in a dict repr / JSON body (``'Authorization': 'Bearer x'``,
# ``"primaryKey": "x"`` from Azure ML's listKeys).
_Q = "['\"]?"
_PATTERNS = [
    re.compile(rf"(?i)(authorization{_Q}\s*[:=]\s*{_Q}(?:bearer|basic)?\s*)([^\s,;'\"]+)"),
    re.compile(rf"(?i)((?:training|prediction|subscription)-key{_Q}\s*[:=]\s*{_Q})([^\s,;'\"]+)"),
    re.compile(rf"(?i)((?:api[-_]?key|primarykey|secondarykey|sig|password|token){_Q}\s*[=:]\s*{_Q})"
               r"([^\s,;&'\"]+)"),
]


def register_secret(value: str | None) -> None:
    """Remember a secret value (keys, tokens) so it is masked wherever it appears."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    if not text:
        return text
    with _lock:
        values = sorted(_secrets, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


def mask(value: str | None) -> str:
    """What a screen shows for a secret: nothing of the value but whether it is set."""
    return MASK if value else ""
