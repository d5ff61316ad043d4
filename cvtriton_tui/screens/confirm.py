"""Questions that guard something that cannot be undone: quitting while work runs or with unsaved settings,
deleting an endpoint. The safe answer is focused, and Escape means no (or Cancel)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "no", "Cancel"), Binding("y", "yes", "Yes", show=False),
                Binding("n", "no", "No", show=False)]
    AUTO_FOCUS = "#no"

    def __init__(self, title: str, question: str, *, yes: str = "Yes", no: str = "Cancel",
                 danger: bool = True) -> None:
        super().__init__(classes="modal")
        self.confirm_title = title
        self.question = question
        self.yes_label = yes
        self.no_label = no
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="confirm-dialog") as dialog:
            dialog.border_title = self.confirm_title
            yield Static(Text(self.question), id="question")
            with Horizontal(classes="buttons"):
                yield Button(self.yes_label, id="yes", variant="error" if self.danger else "primary")
                yield Button(self.no_label, id="no")


    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class ChoiceScreen(ModalScreen[str]):
    """A question with several answers (e.g. Save / Discard / Cancel); dismisses with the chosen answer's
    key, or "cancel" on Escape. Each answer's first letter is its key too."""

    BINDINGS = [Binding("escape", "answer('cancel')", "Cancel")]

    def __init__(self, title: str, question: str, answers: tuple[tuple[str, str, str], ...], *,
                 focus: str) -> None:
        super().__init__(classes="modal")
        self.choice_title = title
        self.question = question
        self.answers = answers          # (key, label, button variant)
        self.AUTO_FOCUS = f"#answer-{focus}"

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="confirm-dialog") as dialog:
            dialog.border_title = self.choice_title
            yield Static(Text(self.question), id="question")
            with Horizontal(classes="buttons"):
                for key, label, variant in self.answers:
                    yield Button(label, id=f"answer-{key}", variant=variant)  # type: ignore[arg-type]

    def on_key(self, event) -> None:  # noqa: ANN001 - textual.events.Key
        for key, label, _ in self.answers:
            if event.character and event.character.lower() == label[0].lower():
                event.stop()
                self.dismiss(key)
                return

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss((event.button.id or "answer-cancel").removeprefix("answer-"))

    def action_answer(self, key: str) -> None:
        self.dismiss(key)
