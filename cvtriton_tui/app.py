"""The full-screen wizard (``cvtriton-tui`` without a sub-command).

The app owns the wizard state and the one pipeline worker: a pane asks ``start_run`` to run core steps,
the worker consumes ``cvtriton_core.pipeline.run_steps`` and posts each event to that pane as a typed
message. The UI never waits on work: every run, check and listing happens in a worker
(``exit_on_error=False``); failures become an error modal, never a traceback. Quitting while work runs asks
first, then cancels the worker and waits for the pipeline to close what it opened (a local Triton server).

Import cost matters (first paint < 1 s): nothing here or in the screens imports an SDK, onnx, numpy or PIL
at module level; those load inside workers when a step needs them.
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
from cvtriton_tui.messages import GotoStep, PipelineEvent, RunEnded, StepStatusChanged
from cvtriton_tui.screens.confirm import ConfirmScreen
from cvtriton_tui.screens.error_modal import ErrorModal
from cvtriton_tui.screens.main import MainScreen
from cvtriton_tui.screens.palette import WizardCommands
from cvtriton_tui.screens.startup import check_run_state
from cvtriton_tui.screens.state import WizardState
from cvtriton_tui.widgets.event_log import describe

BUSY_GROUPS = ("pipeline", "prepare")
# What each worker group does, for the error modal when one dies of an exception it did not handle.
WORK_TITLES = {"pipeline": "Run", "prepare": "Preparing the run", "save": "Saving settings",
               "save-logs": "Saving logs", "shutdown": "Stopping work", "annotate": "Drawing the predictions",
               "scan": "Scanning the image folder", "cv-projects": "Listing projects",
               "cv-iterations": "Listing iterations", "check-customvision": "Custom Vision check",
               "check-azureml": "Azure ML check", "check-triton": "Local Triton check"}
STOP_TIMEOUT_S = 30.0


class WizardApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "cvtriton — Custom Vision → Triton"
    COMMANDS = App.COMMANDS | {WizardCommands}
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("ctrl+r", "toggle_secrets", "Show secrets"),
        Binding("ctrl+l", "save_logs", "Save logs"),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
    ]

    def __init__(self, env_file: Path, workdir: Path, *, state: WizardState | None = None) -> None:
        super().__init__()
        self.state = state or WizardState.load(Path(env_file), Path(workdir))
        self.session_log: list[str] = []
        self.sample_images: list[Path] = []
        self.running_run_id: int | None = None
        self._run_seq = 0
        self._run_pane: Any = None
        self.main = MainScreen()

    def get_default_screen(self) -> MainScreen:
        return self.main

    def on_mount(self) -> None:
        self.call_after_refresh(check_run_state, self)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_secrets":
            return self.state.current == "settings"
        return True

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.main.refresh_bindings()      # Run/Cancel in the footer follow the work
        self.report_worker_error(event)

    def report_worker_error(self, event: Worker.StateChanged) -> None:
        """Workers run with ``exit_on_error=False``: one that dies of an exception it did not handle would
        otherwise vanish without a word (and leave its pane waiting). Every node that runs workers calls this."""
        error = event.worker.error
        if event.state is not WorkerState.ERROR or error is None:
            return
        import traceback

        title = f"{WORK_TITLES.get(event.worker.group, 'Background work')} failed"
        if isinstance(error, UserError):
            message = error.one_line()
        else:
            first = (str(error).strip().splitlines() or ["(no message)"])[0][:200]
            message = (f"unexpected {type(error).__name__}: {first} — please report this (Ctrl+L saves the "
                       "logs)")
        self.show_error(title, message, "".join(traceback.format_exception(error)))
    # navigation -------------------------------------------------------------------------------------------
    def goto(self, step: str) -> None:
        self.main.post_message(GotoStep(step))

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

    def start_run(self, pane: Any, names: list[str], options: Any, *, title: str) -> int | None:
        """Run core steps ``names`` for ``pane``; returns the run id, or None when it could not start."""
        if self.busy():
            self.notify_busy()
            return None
        from cvtriton_core.pipeline import RunContext
        from cvtriton_core.steps.registry import build_steps

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
        self._run_pane = pane
        self._set_status(pane.step_id, "running")
        self.record_note(f"run {self._run_seq} ({title}): {', '.join(names)}")
        self._drive(self._run_seq, steps, run, pane)
        return self._run_seq

    @work(group="pipeline", exclusive=True, exit_on_error=False, name="pipeline")
    async def _drive(self, run_id: int, steps: list[Any], run: Any, pane: Any) -> None:
        from cvtriton_core.pipeline import run_steps

        ok, cancelled = True, False
        try:
            async for event in run_steps(steps, run):
                self._record(event)
                pane.post_message(PipelineEvent(event, run_id))
                if event.kind == "failed":
                    ok = False
                    if not event.cancelled:
                        self.show_error(f"{_title(steps, event.step)} failed", event.message, event.details,
                                        retry=pane.run_step)
        except asyncio.CancelledError:
            ok, cancelled = False, True
            self.record_note(f"run {run_id} cancelled by the user")
            raise
        except Exception as exc:  # the pipeline reports step failures as events; this is a bug guard
            ok = False
            import traceback

            self.show_error("Unexpected error", f"{type(exc).__name__}: {exc} — please report this (Ctrl+L saves "
                            "the logs)", "".join(traceback.format_exception(exc)))
        finally:
            self.running_run_id = None
            self._set_status(pane.step_id, "done" if ok else ("cancelled" if cancelled else "failed"))
            pane.post_message(RunEnded(run_id, ok, cancelled))

    def action_cancel_run(self) -> None:
        workers = [w for w in self.workers if w.group in BUSY_GROUPS and not w.is_finished]
        if not workers:
            self.notify("Nothing is running.")
            return
        for worker in workers:
            worker.cancel()
        self.notify("Cancelling — running steps stop cleanly (a local Triton server is shut down).")

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
        self.record_note(f"error: {title}: {message}")

        def closed(answer: str | None) -> None:
            if answer == "retry" and retry is not None:
                self._retry_when_idle(retry)

        self.push_screen(ErrorModal(title, message, details, can_retry=retry is not None), closed)

    @work(group="retry", exclusive=True, exit_on_error=False)
    async def _retry_when_idle(self, retry: Callable[[], None]) -> None:
        """Retry once the failed run has closed what it opened (a local Triton takes seconds to stop)."""
        for worker in [w for w in self.workers if w.group in BUSY_GROUPS and not w.is_finished]:
            with contextlib.suppress(WorkerCancelled, WorkerFailed, asyncio.TimeoutError):
                await asyncio.wait_for(worker.wait(), STOP_TIMEOUT_S)
        retry()

    def record_note(self, text: str) -> None:
        self.session_log.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} wizard  {redact(text)}")

    def _record(self, event: Any) -> None:
        line = describe(event)
        text = line.plain if line is not None else getattr(event, "message", "")
        if event.kind == "progress" and event.fraction is not None:
            text = f"{event.fraction * 100:5.1f}% {text}"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.at))
        self.session_log.append(f"{stamp} {event.step:<12} {event.kind:<8} {redact(text)}")
        if event.kind == "failed" and event.details:
            self.session_log.extend("    " + l for l in redact(event.details).splitlines())

    def action_save_logs(self) -> None:
        path = self.state.workdir / "logs" / f"wizard-{time.strftime('%Y%m%d-%H%M%S')}.log"
        lines = list(self.session_log) or ["(no events yet)"]
        self.run_worker(self._save_logs(path, lines), group="save-logs", exit_on_error=False)

    async def _save_logs(self, path: Path, lines: list[str]) -> None:
        from cvtriton_core.fsutil import atomic_write_text

        try:
            await asyncio.to_thread(atomic_write_text, path, "\n".join(redact(l) for l in lines) + "\n")
        except OSError as exc:
            self.show_error("Logs not saved", f"cannot write {path} ({exc.strerror or type(exc).__name__}) "
                            "— pass a writable --workdir")
            return
        self.notify(f"Logs saved to {path}")

    def reload_settings(self, *, keep_edits: bool = True) -> bool:
        """Re-read the settings file (steps write project/iteration IDs into it); unsaved edits stay on top."""
        from cvtriton_core.settings import Settings

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
        self.main.pane("settings").show_values()  # type: ignore[attr-defined]
        return True

    # small actions --------------------------------------------------------------------------------------
    def _set_status(self, step: str, status: str) -> None:
        self.state.status[step] = status
        self.main.post_message(StepStatusChanged(step, status))

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def action_toggle_secrets(self) -> None:
        self.main.pane("settings").toggle_reveal()  # type: ignore[attr-defined]

    def action_switch_target(self) -> None:
        self.main.pane("settings").select_target("local" if self.state.target == "azure" else "azure")  # type: ignore[attr-defined]

    def action_run_step(self) -> None:
        self.main.current_pane().run_step()

    async def action_quit(self) -> None:
        if not self.busy():
            self.exit(0)
            return
        title = self._run_pane.step_id if self._run_pane is not None else "work"
        self.push_screen(ConfirmScreen("Quit while work is running?",
                                       f"{title} is still running. Quitting cancels it cleanly: a local Triton "
                                       "server is stopped, and the next start offers to resume.",
                                       yes="Stop and quit", no="Keep running"), self._quit_answered)

    def _quit_answered(self, yes: bool | None) -> None:
        if yes:
            self.notify("Stopping the running step…")
            self.run_worker(self._stop_then_exit(), group="shutdown", exit_on_error=False)

    async def _stop_then_exit(self) -> None:
        await self.stop_work()
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
