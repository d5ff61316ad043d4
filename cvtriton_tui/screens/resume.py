"""Offered on start when the run state shows steps that were running when the tool last stopped (killed,
crashed, closed): resume there, discard the interruption, or decide later."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ResumePrompt(ModalScreen[str]):
    """Dismisses with "resume", "discard" or "later"."""

    BINDINGS = [Binding("escape", "later", "Later")]
    AUTO_FOCUS = "#resume"

    def __init__(self, target: str, steps: list[str], titles: list[str]) -> None:
        super().__init__(classes="modal")
        self.target = target
        self.steps = steps
        self.titles = titles

    def compose(self) -> ComposeResult:
        where = "the Azure pipeline" if self.target == "azure" else "the local target"
        text = Text()
        text.append(f"A run of {where} was interrupted during: ")
        text.append(", ".join(self.titles), style="bold")
        text.append(".\nResume goes to that step and runs it again; finished steps are not repeated.")
        with Vertical(id="dialog", classes="resume-dialog") as dialog:
            dialog.border_title = "Resume the interrupted run?"
            yield Static(text, id="resume-text")
            with Horizontal(classes="buttons"):
                yield Button("Resume", id="resume", variant="primary")
                yield Button("Discard", id="discard", variant="warning")
                yield Button("Later", id="later")


    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id or "later")

    def action_later(self) -> None:
        self.dismiss("later")
