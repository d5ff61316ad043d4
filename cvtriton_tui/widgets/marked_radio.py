"""A radio button whose state shows without colour: ● when chosen, blank when not (Textual's own radio
button draws the same ● for both and tells them apart by colour only)."""

from __future__ import annotations

from textual.widgets import RadioButton


class MarkedRadioButton(RadioButton):
    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802 - Textual's name
        return "●" if self.value else " "
