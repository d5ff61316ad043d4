"""The full-screen wizard (``cvtriton-tui`` without a sub-command).

The app owns the wizard state and the one pipeline worker: a pane asks ``start_run`` to run core steps,
the worker consumes ``cvtriton_core.pipeline.run_steps`` and posts each event to that pane as a typed
message. The UI never waits on work: every run, check and listing happens in a worker
(``exit_on_error=False``), and one handler (``worker_state_changed``) turns a worker that dies of an
exception into the error modal — never a traceback. Quitting asks first when settings are unsaved or work
runs, then cancels the work and waits for the pipeline to close what it opened (a local Triton server).

Import cost matters (first paint): nothing here or in the screens imports an SDK, onnx, numpy or PIL at
module level; those load inside workers when a step needs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any, Callable

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import NoActiveWorker, Worker, WorkerCancelled, WorkerFailed, WorkerState, get_current_worker

from cvtriton_core.errors import UserError
from cvtriton_core.redact import redact
from cvtriton_tui.messages import PipelineEvent, RunEnded, StepsChanged
from cvtriton_tui.screens import choices, freshness
from cvtriton_tui.screens.main import MainScreen
from cvtriton_tui.screens.palette import WizardCommands
from cvtriton_tui.screens.state import WizardState

BUSY_GROUPS = ("pipeline", "prepare")
STOP_TIMEOUT_S = 30.0
CHOICES_SAVE_DELAY_S = 0.5


class WizardApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "cvtriton — Custom Vision → Triton"
    COMMANDS = App.COMMANDS | {WizardCommands}
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("ctrl+r", "toggle_secrets", "Secrets"),
        Binding("ctrl+l", "save_logs", "Logs"),
        Binding("ctrl+t", "toggle_theme", "Theme"),
    ]

    def __init__(self, env_file: Path, workdir: Path, *, state: WizardState | None = None) -> None:
        super().__init__()
        self.state = state or WizardState.load(Path(env_file), Path(workdir))
        choices.restore(self.state)
        self.session_log: list[str] = []
        self.sample_images: list[Path] = []
        self.running_run_id: int | None = None
        self.running_title = ""           # what the running work is, in words (the quit dialog names it)
        self._run_seq = 0
        self._choices_saved = choices.snapshot(self.state)
        self._choices_timer: Any = None
        self._choices_error_shown = False
        self.main = MainScreen()

    def get_default_screen(self) -> MainScreen:
        return self.main

    def on_mount(self) -> None:
        from cvtriton_tui.screens.startup import check_run_state

        self.call_after_refresh(check_run_state, self)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_secrets":
            return self.state.current == "settings"
        return True

    # the one place worker failures are turned into words ----------------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.worker_state_changed(event)

    def worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker's state change ends here (panes pass on those of the workers they started): the
        footer's Run/Cancel follow the work, and a worker that died of an exception opens the error modal —
        workers run with ``exit_on_error=False``, so it would otherwise vanish without a word."""
        self.main.refresh_bindings()
        error = event.worker.error
        if event.state is not WorkerState.ERROR or error is None:
            return
        import traceback

        what = event.worker.description or "Background work"
        if isinstance(error, UserError):
            message = error.one_line()
        else:
            first = (str(error).strip().splitlines() or ["(no message)"])[0][:200]
            message = f"unexpected {type(error).__name__}: {first} — please report this (Ctrl+L saves the logs)"
        self.show_error(f"{what} failed", redact(message), redact("".join(traceback.format_exception(error))))

    # navigation -------------------------------------------------------------------------------------------
    def goto(self, step: str) -> None:
        from cvtriton_tui.messages import GotoStep

        self.main.post_message(GotoStep(step))

    def steps_changed(self) -> None:
        self.main.post_message(StepsChanged())

    def choices_changed(self) -> None:
        """A choice or a setting changed: the step list re-checks what is outdated, and the choices file is
        rewritten a moment later (once per burst of typing)."""
        self.steps_changed()
        if self._choices_timer is not None:
            self._choices_timer.stop()
        self._choices_timer = self.set_timer(CHOICES_SAVE_DELAY_S, self.save_choices)

    def save_choices(self) -> None:
        text = choices.snapshot(self.state)
        if text == self._choices_saved:
            return
        try:
            choices.save(self.state, text)
        except OSError as exc:
            if not self._choices_error_shown:       # once: the work folder will not get better by itself
                self._choices_error_shown = True
                self.notify(f"Cannot keep the wizard's choices in {choices.path_for(self.state)} "
                            f"({exc.strerror or type(exc).__name__}) — pass a writable --workdir",
                            severity="warning", timeout=10)
            return
        self._choices_saved = text

    def setting_changed(self, name: str, value: str) -> None:
        """A step edited a setting (the export flavour on Train, the endpoint name on Deploy): one value, the
        same the Settings step shows and Ctrl+S saves."""
        self.state.set_value(name, value)
        if self.main.has_pane("settings"):
            self.main.pane("settings").show_values((name,))  # type: ignore[attr-defined]
        self.choices_changed()

    # runs -------------------------------------------------------------------------------------------------
    def busy(self) -> bool:
        """Is a run (or the preparation of one) under way? The calling worker itself does not count."""
        try:
            me = get_current_worker()
        except NoActiveWorker:
            me = None
        return any(w.group in BUSY_GROUPS and not w.is_finished and w is not me for w in self.workers)

    def notify_busy(self) -> None:
        self.notify("A run is in progress — wait for it or cancel it (F8).", severity="warning")

    def flush_edits(self) -> None:
        if self.main.has_pane("settings"):
            self.main.pane("settings").sync_edits()  # type: ignore[attr-defined]

    def start_run(self, pane: Any, names: list[str], options: Any, *, title: str, record: bool = True) -> int | None:
        """Run core steps ``names`` for ``pane``; returns the run id, or None when it could not start.
        ``record=False``: the run does not stand for the pane's step (a traffic shift on Deploy changes the
        routing, not the deployment): the step keeps its status and what its result was made from."""
        if self.busy():
            self.notify_busy()
            return None
        from cvtriton_core.pipeline import RunContext
        from cvtriton_core.steps.registry import build_steps

        self.flush_edits()
        try:
            steps = build_steps(names, options)
            settings = self.state.effective_settings()
            overrides = pane.settings_overrides()
            if overrides:
                settings = settings.with_values(**overrides)
            run = RunContext.create(settings, self.state.run_dir)
        except UserError as exc:
            self.show_error(f"{title}: cannot start", exc.one_line())
            return None
        except OSError as exc:
            self.show_error(f"{title}: cannot start", f"cannot use the work folder {self.state.run_dir} "
                            f"({exc.strerror or type(exc).__name__}) — pass a writable --workdir")
            return None
        self._run_seq += 1
        self.running_run_id = self._run_seq
        self.running_title = title
        target = self.state.target
        if record:
            freshness.record_start(self.state, target, pane.step_id, str(self._run_seq))
            self._set_status(target, pane.step_id, "running")
        self.record_note(f"run {self._run_seq} ({title}): {', '.join(names)}")
        self._drive(self._run_seq, steps, run, pane, target if record else None)
        return self._run_seq

    @work(group="pipeline", exclusive=True, exit_on_error=False, name="pipeline", description="Run")
    async def _drive(self, run_id: int, steps: list[Any], run: Any, pane: Any, target: str | None) -> None:
        from cvtriton_core.events import StepFailed
        from cvtriton_core.pipeline import run_steps

        ok, cancelled = True, False
        try:
            async for event in run_steps(steps, run):
                self._record(event)
                pane.post_message(PipelineEvent(event, run_id))
                if isinstance(event, StepFailed):
                    ok = False
                    if not event.cancelled:
                        self.show_error(f"{_title(steps, event.step)} failed", event.message, event.details,
                                        retry=pane.retry_run)
        except asyncio.CancelledError:
            ok, cancelled = False, True
            self.record_note(f"run {run_id} cancelled by the user")
            raise
        except BaseException:
            ok = False
            raise
        finally:
            self.running_run_id = None
            self.running_title = ""
            if target is not None:
                self._set_status(target, pane.step_id, "done" if ok else ("cancelled" if cancelled else "failed"))
            pane.post_message(RunEnded(run_id, ok, cancelled, run.state.values))

    def action_cancel_run(self) -> None:
        workers = [w for w in self.workers if w.group in BUSY_GROUPS and not w.is_finished]
        if not workers:
            self.notify("Nothing is running.")
            return
        for worker in workers:
            worker.cancel()
        self.notify(f"Cancelling {self.running_title or 'the running work'}…")

    async def stop_work(self) -> None:
        """Cancel running work and wait until the pipeline has closed what it opened."""
        workers = [w for w in self.workers if w.group in BUSY_GROUPS and not w.is_finished]
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(WorkerCancelled, WorkerFailed, asyncio.TimeoutError):
                await asyncio.wait_for(worker.wait(), STOP_TIMEOUT_S)

    # errors and logs ----------------------------------------------------------------------------------
    def show_error(self, title: str, message: str, details: str = "", *,
                   retry: Callable[[], None] | None = None) -> None:
        """The error modal; with ``retry``, it offers Retry (R), which calls it once the modal is closed."""
        from cvtriton_tui.screens.error_modal import ErrorModal

        self.record_note(f"error: {title}: {message}")

        def closed(answer: str | None) -> None:
            if answer == "retry" and retry is not None:
                self._retry_when_idle(retry)

        self.push_screen(ErrorModal(title, message, details, can_retry=retry is not None), closed)

    @work(group="retry", exclusive=True, exit_on_error=False, description="Retry")
    async def _retry_when_idle(self, retry: Callable[[], None]) -> None:
        """Retry once the failed run has closed what it opened (a local Triton takes seconds to stop)."""
        for worker in [w for w in self.workers if w.group in BUSY_GROUPS and not w.is_finished]:
            with contextlib.suppress(WorkerCancelled, WorkerFailed, asyncio.TimeoutError):
                await asyncio.wait_for(worker.wait(), STOP_TIMEOUT_S)
        retry()

    def record_note(self, text: str) -> None:
        self.session_log.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} wizard  {redact(text)}")

    def _record(self, event: Any) -> None:
        from cvtriton_core.event_text import describe_event
        from cvtriton_core.events import StepFailed

        line = describe_event(event)
        text = line.plain if line is not None else ""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.at))
        self.session_log.append(f"{stamp} {event.step:<12} {event.kind:<8} {redact(text)}")   # kind: a column label
        if isinstance(event, StepFailed) and event.details:
            self.session_log.extend("    " + l for l in redact(event.details).splitlines())

    def action_save_logs(self) -> None:
        path = self.state.workdir / "logs" / f"wizard-{time.strftime('%Y%m%d-%H%M%S')}.log"
        self._save_logs(path, list(self.session_log) or ["(no events yet)"])

    @work(group="save-logs", exit_on_error=False, description="Saving the logs")
    async def _save_logs(self, path: Path, lines: list[str]) -> None:
        from cvtriton_core.fsutil import atomic_write_text

        try:
            await asyncio.to_thread(atomic_write_text, path, "\n".join(redact(l) for l in lines) + "\n")
        except OSError as exc:
            raise UserError(f"cannot write {path} ({exc.strerror or type(exc).__name__})",
                            "pass a writable --workdir") from None
        self.notify(f"Logs saved to {path}")

    def reload_settings(self, *, keep_edits: bool = True) -> bool:
        """Re-read the settings file (steps write project/iteration IDs into it); unsaved edits stay on top."""
        from cvtriton_core.settings import Settings

        self.flush_edits()
        try:
            settings = Settings.load(self.state.env_file)
        except UserError as exc:
            self.show_error("Cannot read the settings file", exc.one_line())
            return False
        self.state.settings = settings
        if not keep_edits:
            self.state.edits.clear()
        for name, value in list(self.state.edits.items()):
            if settings.raw(name) == value:
                self.state.edits.pop(name)
        if self.main.has_pane("settings"):
            self.main.pane("settings").show_values()  # type: ignore[attr-defined]
        self.choices_changed()
        return True

    # small actions --------------------------------------------------------------------------------------
    def _set_status(self, target: str, step: str, status: str) -> None:
        self.state.records.statuses(target)[step] = status
        self.steps_changed()

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def action_toggle_secrets(self) -> None:
        self.main.pane("settings").toggle_reveal()  # type: ignore[attr-defined]

    def action_switch_target(self) -> None:
        self.main.pane("settings").select_target("local" if self.state.target == "azure" else "azure")  # type: ignore[attr-defined]

    def action_run_step(self) -> None:
        self.main.current_pane().request_run()

    # quitting -------------------------------------------------------------------------------------------
    async def action_quit(self) -> None:
        from cvtriton_tui.screens.confirm import ChoiceScreen

        self.flush_edits()
        if self.state.edits:
            names = ", ".join(sorted(self.state.edits))
            self.push_screen(ChoiceScreen(
                "Unsaved settings", f"These settings are changed but not saved to {self.state.env_file}: "
                f"{names}.", (("save", "Save and quit", "primary"), ("discard", "Discard", "error"),
                              ("cancel", "Cancel", "default")), focus="save"), self._unsaved_answered)
            return
        self._quit_if_idle()

    def _unsaved_answered(self, answer: str | None) -> None:
        if answer == "save":
            self._save_then_quit()
        elif answer == "discard":
            self.state.edits.clear()
            self._quit_if_idle()

    @work(group="quit-save", exit_on_error=False, description="Saving settings before quitting")
    async def _save_then_quit(self) -> None:
        worker = self.main.pane("settings")._save(dict(self.state.edits))  # type: ignore[attr-defined]
        try:
            await worker.wait()
        except (WorkerFailed, WorkerCancelled):
            return      # the error modal says why; the wizard stays open
        self._quit_if_idle()

    def _quit_if_idle(self) -> None:
        from cvtriton_tui.screens.confirm import ConfirmScreen

        if not self.busy():
            self._exit_now()
            return
        self.push_screen(ConfirmScreen("Quit while work is running?", self.quit_question(),
                                       yes="Stop and quit", no="Keep running"), self._quit_answered)

    def quit_question(self) -> str:
        """Names the work actually running and what stopping it means for that work."""
        work_title = self.running_title or next(
            (w.description for w in self.workers if w.group in BUSY_GROUPS and not w.is_finished), "") or "work"
        pane = next((p for p in self.main.query(".pane") if getattr(p, "running", False)), None)
        what = pane.quit_consequence() if pane is not None else "it stops cleanly"
        return f"{work_title} is still running. Quitting cancels it: {what}. The next start offers to resume."

    def _quit_answered(self, yes: bool | None) -> None:
        if yes:
            self.notify(f"Stopping {self.running_title or 'the running work'}…")
            self._stop_then_exit()

    @work(group="shutdown", exit_on_error=False, description="Stopping work")
    async def _stop_then_exit(self) -> None:
        await self.stop_work()
        self._exit_now()

    async def _shutdown(self) -> None:
        # The panes are mounted right after the first paint. Shutting down in the middle of that (a quit at
        # once, or a test ending) prunes widgets whose own on_mount (Select, DataTable) still looks for
        # their children, and Textual reports that as a crash: let the mount finish first.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.main.panes_mounted(), 10)
        await super()._shutdown()

    def _exit_now(self) -> None:
        if self._choices_timer is not None:
            self._choices_timer.stop()
        self.save_choices()
        self.exit(0)


def _title(steps: list[Any], name: str) -> str:
    return next((getattr(s, "title", name) for s in steps if getattr(s, "name", "") == name), name)


def run_app(env_file: Path, workdir: Path) -> int:
    """Open the wizard; returns the exit code (0 after a normal quit)."""
    state = WizardState.load(Path(env_file), Path(workdir))  # a bad settings file fails here, before the screen
    app = WizardApp(Path(env_file), Path(workdir), state=state)
    result = app.run()
    if isinstance(result, int):
        return result
    return app.return_code or 0

