"""One ``.env`` variable on the Settings step: its name, an input (masked for secrets), and the problem
with its value right under it, naming what the value should look like.

Validation uses the core's own rules (``cvtriton_core.settings.VARIABLES``: ``check``, ``required_for``)
per keystroke, without building a ``Settings`` object: that would register every half-typed key as a
secret to redact.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Input, Label

from cvtriton_core.redact import mask
from cvtriton_tui.widgets.compact import CompactInput


def field_problem(var: Any, value: str, target: str) -> str | None:
    """One line naming what is wrong with ``value`` for ``var`` and what to do, or None."""
    if not value:
        if target in var.required_for:
            return f"{var.name} is not set — needed for the {target.title()} target ({var.help})"
        return None
    if var.check is not None:
        expected = var.check(value)
        if expected:
            shown = mask(value) if var.secret else repr(value)
            return f"{var.name}={shown} is not valid — expected {expected}"
    return None


class SettingField(Widget):
    """Name and input side by side, the problem below: one grid of two widgets, plus the problem's line once
    there is one (19 of these are on the first screen the wizard paints, so each one is kept small)."""

    DEFAULT_CSS = """
    SettingField { height: auto; layout: grid; grid-size: 2; grid-columns: 34 1fr; grid-rows: auto; }
    SettingField .field-name { width: 100%; padding: 0 1 0 0; }
    SettingField Input { width: 1fr; }
    SettingField .field-error { column-span: 2; padding-left: 34; width: 1fr; height: auto; display: none; }
    SettingField.invalid .field-error { display: block; }
    SettingField.invalid Input { background: $error 25%; }
    """

    def __init__(self, var: Any, value: str, *, target: str, reveal: bool) -> None:
        super().__init__(id=f"field-{var.name}", classes="setting-field")
        self.var = var
        self.initial = value
        self.target = target
        self.reveal = reveal

    def compose(self) -> ComposeResult:
        yield Label(self._name_text(), classes="field-name")
        placeholder = f"{self.var.help}" + (f" (default {self.var.default})" if self.var.default else "")
        yield CompactInput(self.initial, placeholder=placeholder, password=self.var.secret and not self.reveal,
                           id=f"input-{self.var.name}", tooltip=self.var.help)
        problem = field_problem(self.var, self.initial.strip(), self.target)
        if problem:
            yield Label(Text(problem, style="red"), classes="field-error")

    def _name_text(self) -> Text:
        text = Text(self.var.name)
        if self.target in self.var.required_for:
            text.append(" *", style="bold")
        if self.var.secret:
            text.append(" (secret)", style="dim")
        return text

    @property
    def value(self) -> str:
        return self.query_one(Input).value.strip()

    def set_reveal(self, reveal: bool) -> None:
        self.reveal = reveal
        if self.var.secret:
            self.query_one(Input).password = not reveal

    def set_target(self, target: str) -> None:
        self.target = target
        self.query_one(".field-name", Label).update(self._name_text())

    def validate_value(self) -> str | None:
        problem = field_problem(self.var, self.value, self.target)
        self.set_class(problem is not None, "invalid")
        shown = list(self.query(".field-error").results(Label))
        if shown:
            shown[0].update(Text(problem or "", style="red"))
        elif problem:
            self.mount(Label(Text(problem, style="red"), classes="field-error"))
        return problem
