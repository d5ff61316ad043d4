"""A failed step or check, shown as a modal instead of a crash: the cause, the fix, and the technical
details (redacted once more here, in case anything slipped through) folded away until asked for."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Collapsible, Label, Static

from cvtriton_core.redact import redact


def split_message(message: str) -> tuple[str, str]:
    """``"cause — fix"`` (the core's one-line form) into its two halves."""
    cause, sep, fix = message.partition(" — ")
    return cause.strip(), (fix.strip() if sep else "")


class ErrorModal(ModalScreen[str]):
    """Dismisses with "close" or "retry" (Retry is offered only when the caller can retry)."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("r", "retry", "Retry", show=False)]
    AUTO_FOCUS = "#close"

    def __init__(self, title: str, message: str, details: str = "", *, can_retry: bool = False) -> None:
        super().__init__(classes="modal")
        self.error_title = title
        self.message = redact(message)
        self.details = redact(details or "")
        self.can_retry = can_retry

    def compose(self) -> ComposeResult:
        cause, fix = split_message(self.message)
        with Vertical(id="dialog", classes="error-dialog") as dialog:
            dialog.border_title = self.error_title
            yield Label(Text("Cause", style="bold"))
            yield Static(Text(cause), id="error-cause")
            yield Label(Text("Fix", style="bold"))
            yield Static(Text(fix or "see the details below"), id="error-fix")
            if self.details:
                with Collapsible(title="Details (secrets masked)", collapsed=True, id="error-details"):
                    with VerticalScroll(id="error-details-scroll"):
                        yield Static(Text(self.details), id="error-details-text")
            with Horizontal(classes="buttons"):
                if self.can_retry:
                    yield Button("Retry", id="retry", variant="primary")
                yield Button("Close", id="close", variant="error")


    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss("retry" if event.button.id == "retry" else "close")

    def action_close(self) -> None:
        self.dismiss("close")

    def action_retry(self) -> None:
        if self.can_retry:
            self.dismiss("retry")
