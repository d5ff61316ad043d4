"""Command palette entries (Ctrl+P): jump to any step, save the logs, toggle the theme, and the other
wizard-wide actions, each searchable by name."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterator

from textual.command import DiscoveryHit, Hit, Hits, Provider

from cvtriton_tui.screens.state import STEP_TITLES


class WizardCommands(Provider):
    def _commands(self) -> Iterator[tuple[str, str, Callable[[], Any]]]:
        app: Any = self.app
        state = app.state
        for number, step in enumerate(state.steps, start=1):
            yield (f"Go to step {number}: {STEP_TITLES[step]}", "Jump to this step of the wizard",
                   partial(app.goto, step))
        yield ("Save logs", "Write every event of this session to a file in the work folder", app.action_save_logs)
        yield ("Toggle dark/light theme", "Switch between the dark and the light theme", app.action_toggle_theme)
        yield ("Reveal/hide secrets", "Show or mask keys on the Settings step", app.action_toggle_secrets)
        other = "Local" if state.target == "azure" else "Azure"
        yield (f"Switch target to {other}", "Choose which pipeline the wizard walks", app.action_switch_target)
        yield ("Run this step", "Start the current step's work (F5)", app.action_run_step)
        yield ("Cancel running work", "Stop the running step cleanly (a local Triton is stopped)",
               app.action_cancel_run)

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, text=title, help=help_text)
