"""What the wizard checks once it is on screen: step statuses from the saved run state, a run that was
interrupted (offered for resume), and — in the background, when the settings name an Azure ML workspace — the
endpoints this tool created that still exist there (found by their tag; they cost money while they run)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from cvtriton_core.errors import UserError
from cvtriton_core.layout import local_run_dir
from cvtriton_core.run_state import FILENAME, RunState
from cvtriton_tui.screens import azure_reads, freshness
from cvtriton_tui.screens.resume import ResumePrompt
from cvtriton_tui.screens.state import CORE_STEP_PANE, STEP_TITLES

if TYPE_CHECKING:
    from cvtriton_tui.app import WizardApp

STATUS_FROM_RUN = {"done": "done", "failed": "failed", "cancelled": "cancelled", "running": "cancelled",
                   "discarded": "cancelled"}


def load_run_state(app: "WizardApp", target: str) -> RunState | None:
    folder = local_run_dir(app.state.workdir) if target == "local" else app.state.workdir
    if not (folder / FILENAME).exists():
        return None
    try:
        return RunState.load(folder)
    except UserError as exc:
        app.show_error("Saved run state unreadable", exc.one_line())
        return None


def _latest(run: RunState) -> dict[str, tuple[float, str]]:
    latest: dict[str, tuple[float, str]] = {}
    for name, info in run.steps.items():
        pane = CORE_STEP_PANE.get(name)
        if pane is None:
            continue
        at = float(info.get("at") or 0)
        if pane not in latest or at >= latest[pane][0]:
            latest[pane] = (at, STATUS_FROM_RUN.get(info.get("status", ""), ""))
    return latest


def statuses(run: RunState) -> dict[str, str]:
    """Each wizard step's status: the status of its most recently touched core step."""
    return {pane: status for pane, (_, status) in _latest(run).items() if status}


def stale_steps(run: RunState) -> set[str]:
    """Wizard steps whose result predates a later run of a step they depend on (e.g. Local test done, then
    Package run again — from the headless command, or a wizard that was killed)."""
    latest = _latest(run)
    return {pane for pane, (at, _) in latest.items()
            if any(latest.get(up, (0.0, ""))[0] > at for up in freshness.UPSTREAM.get(pane, ()))}


def check_run_state(app: "WizardApp") -> None:
    state = app.state
    runs = {target: load_run_state(app, target) for target in ("azure", "local")}
    for target, run in runs.items():
        if run is not None:
            freshness.restore(state, target, statuses(run), stale_steps(run))
    app.steps_changed()
    remind_endpoints(app)
    for target, run in runs.items():
        unfinished = run.unfinished() if run is not None else []
        if unfinished:
            titles = [STEP_TITLES.get(CORE_STEP_PANE.get(s, ""), s) + f" ({s})" for s in unfinished]
            app.push_screen(ResumePrompt(target, unfinished, titles),
                            lambda answer, t=target, r=run, u=unfinished: _answer(app, answer, t, r, u))
            return


def _answer(app: "WizardApp", answer: str | None, target: str, run: Any, unfinished: list[str]) -> None:
    if answer == "discard":
        for step in unfinished:
            run.mark(step, "discarded", "interrupted run discarded in the wizard")
        app.record_note(f"discarded interrupted steps: {', '.join(unfinished)}")
        return
    if answer != "resume":
        return
    pane = CORE_STEP_PANE.get(unfinished[0], "settings")
    if app.state.target != target:
        app.action_switch_target()
    app.record_note(f"resuming {', '.join(unfinished)} on {pane}")

    def go() -> None:
        if not app.main.has_pane(pane):     # panes after the first are mounted after it: try again
            app.call_after_refresh(go)
            return
        if app.main.go(pane):               # the same rule as Next: what it needs must be done
            app.main.pane(pane).request_run()

    app.call_after_refresh(go)


def remind_endpoints(app: "WizardApp") -> None:
    """Look for this tool's endpoints in a worker (the first paint never waits for Azure); say how many still
    run, and give the list to the Cleanup step. No workspace in the settings: Azure is not asked."""
    settings = app.state.effective_settings()
    if azure_reads.workspace_known(settings):
        app.run_worker(partial(_remind, app, settings), group="endpoint-reminder", exclusive=True, exit_on_error=False,
                       description="Looking for endpoints this tool created")


async def _remind(app: "WizardApp", settings: Any) -> None:
    from cvtriton_tui.screens.cleanup import record_found

    try:
        found = await azure_reads.find_tool_endpoints(settings)
    except Exception as exc:  # noqa: BLE001 - a reminder is extra: one quiet line, never a dialog
        line = f"Could not check Azure ML for endpoints this tool created: {azure_reads.failure_line(exc)}"
        app.record_note(line)
        record_found(app.state, None, line)
    else:
        record_found(app.state, found)
        if found:
            names = ", ".join(e.name for e in found)
            app.notify(f"{len(found)} endpoint(s) created by this tool are still running: {names} — Cleanup "
                       "deletes them.", title="Reminder", severity="warning", timeout=20)
    if app.main.has_pane("cleanup"):
        app.main.pane("cleanup").show_found()  # type: ignore[attr-defined]
