"""The wizard's sidebar: every step of the chosen target with its status; Enter or a click jumps there.

Nothing here relies on colour alone: the current step carries ▶, the option under the cursor ›, and each
status its own mark (○ not run, ● running, ✔ done, ↻ outdated — must run again, ✖ failed, ■ cancelled).
On a narrow terminal the screen gives the list the ``-narrow`` class and it shows short titles.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from cvtriton_tui.messages import GotoStep

MARKS = {"": ("○", "dim"), "running": ("●", "bold yellow"), "done": ("✔", "green"), "outdated": ("↻", "yellow"),
         "failed": ("✖", "bold red"), "cancelled": ("■", "yellow")}
SHORT_TITLES = {"project": "Project", "train": "Train", "package": "Package", "local-test": "Test",
                "results": "Results"}


def step_prompt(number: int, title: str, status: str, *, current: bool, under_cursor: bool) -> Text:
    mark, style = MARKS.get(status, MARKS[""])
    text = Text()
    text.append("▶" if current else "›" if under_cursor else " ", style="bold")
    text.append(f" {mark} ", style=style)
    text.append(f"{number}. {title}", style="bold" if current else "")
    return text


class StepList(OptionList):
    DEFAULT_CSS = """
    StepList { width: 31; max-width: 33%; height: 1fr; border: round $panel; }
    StepList.-narrow { width: 19; max-width: 19; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.border_title = "Steps"
        self.steps: tuple[str, ...] = ()
        self.titles: dict[str, str] = {}
        self.status: dict[str, str] = {}
        self.current = ""
        self._shown: list[Text] = []

    def show_steps(self, steps: tuple[str, ...], titles: dict[str, str], status: dict[str, str],
                   current: str) -> None:
        """Show ``steps`` with their ``status`` (what the step list may claim: see ``screens.freshness``)."""
        changed, moved = steps != self.steps, current != self.current
        self.steps, self.titles, self.status, self.current = steps, titles, dict(status), current
        if changed:
            self._shown = []
            self.set_options([Option(self._prompt(i), id=s) for i, s in enumerate(steps)])
        if (changed or moved) and current in steps:   # the cursor follows the current step, not every refresh
            self.highlighted = steps.index(current)
        self._refresh_prompts()

    def reset_cursor(self) -> None:
        if self.current in self.steps:
            self.highlighted = self.steps.index(self.current)

    def _prompt(self, index: int) -> Text:
        step = self.steps[index]
        title = SHORT_TITLES.get(step, self.titles[step]) if self.has_class("-narrow") else self.titles[step]
        return step_prompt(index + 1, title, self.status.get(step, ""), current=step == self.current,
                           under_cursor=index == self.highlighted)

    def _refresh_prompts(self) -> None:
        prompts = [self._prompt(i) for i in range(len(self.steps))]
        if prompts == self._shown:
            return
        for index, prompt in enumerate(prompts):
            if index >= len(self._shown) or self._shown[index] != prompt:
                self.replace_option_prompt_at_index(index, prompt)
        self._shown = prompts

    def narrow(self, narrow: bool) -> None:
        if narrow != self.has_class("-narrow"):
            self.set_class(narrow, "-narrow")
            self._refresh_prompts()

    def on_option_list_option_highlighted(self, message: OptionList.OptionHighlighted) -> None:
        message.stop()
        self._refresh_prompts()

    def on_option_list_option_selected(self, message: OptionList.OptionSelected) -> None:
        message.stop()
        if message.option.id:
            self.post_message(GotoStep(message.option.id))
