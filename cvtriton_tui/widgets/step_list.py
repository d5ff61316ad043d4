"""The wizard's sidebar: every step of the chosen target with its status; Enter or a click jumps there."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from cvtriton_tui.messages import GotoStep

MARKS = {"": ("○", "dim"), "running": ("●", "bold yellow"), "done": ("✔", "green"),
         "failed": ("✖", "bold red"), "cancelled": ("■", "yellow")}


def step_prompt(number: int, title: str, status: str) -> Text:
    mark, style = MARKS.get(status, MARKS[""])
    text = Text()
    text.append(f"{mark} ", style=style)
    text.append(f"{number}. {title}")
    return text


class StepList(OptionList):
    DEFAULT_CSS = """
    StepList { width: 29; max-width: 33%; height: 1fr; border: round $panel; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.border_title = "Steps"
        self.steps: tuple[str, ...] = ()

    def show_steps(self, steps: tuple[str, ...], titles: dict[str, str], status: dict[str, str],
                   current: str) -> None:
        self.steps = steps
        self.set_options([Option(step_prompt(i + 1, titles[s], status.get(s, "")), id=s)
                          for i, s in enumerate(steps)])
        if current in steps:
            self.highlighted = steps.index(current)

    def set_status(self, step: str, number: int, title: str, status: str) -> None:
        if step in self.steps:
            self.replace_option_prompt(step, step_prompt(number, title, status))

    def on_option_list_option_selected(self, message: OptionList.OptionSelected) -> None:
        message.stop()
        if message.option.id:
            self.post_message(GotoStep(message.option.id))
