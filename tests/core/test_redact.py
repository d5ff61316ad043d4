"""Redaction of secrets that were never registered: header and key fields in the forms SDK errors and
debug output print them (plain header lines, query strings, dict reprs and JSON bodies)."""

from __future__ import annotations

import pytest

from cvtriton_core.redact import MASK, redact


@pytest.mark.parametrize("text, secret", [
    ("Authorization: Bearer abcdef123", "abcdef123"),
    ("{'Authorization': 'Bearer abcdef123', 'x': 1}", "abcdef123"),
    ('{"Training-Key": "k1234567"}', "k1234567"),
    ("{'Prediction-Key': 'p1234567'}", "p1234567"),
    ("Ocp-Apim-Subscription-Key: s1234567", "s1234567"),
    ('{"primaryKey":"pk12345","secondaryKey":"sk67890"}', "pk12345"),
    ('{"primaryKey":"pk12345","secondaryKey":"sk67890"}', "sk67890"),
    ('{"accessToken": "tok123456", "tokenType": "Bearer"}', "tok123456"),
    ("https://x.blob.core.windows.net/a?sv=1&sig=abc%2F&se=2", "abc%2F"),
])
def test_unregistered_secrets_in_common_forms_are_masked(text, secret):
    out = redact(text)
    assert secret not in out and MASK in out


def test_ordinary_text_is_left_alone():
    text = "model customvision ready at 127.0.0.1:8000 (max_tokens=5 is not a secret field)"
    assert redact(text) == text
