"""What the wizard checks once it is on screen: step statuses from the saved run state, a run that was
interrupted (offered for resume), and Azure ML endpoints this tool deployed and never deleted (they cost
money while they run)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cvtriton_core.errors import UserError
from cvtriton_core.layout import local_run_dir
from cvtriton_core.run_state import FILENAME, RunState
from cvtriton_tui.screens import freshness
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


def endpoints_left_running(run: RunState) -> list[str]:
    """Endpoints the deploy step recorded and the cleanup step has not deleted."""
    steps = run.steps
    deployed = steps.get("deploy", {}).get("status") == "done"
    cleaned = steps.get("cleanup", {}).get("status") == "done"
    name = run.get("endpoint_name")
    return [name] if deployed and not cleaned and name else []


def check_run_state(app: "WizardApp") -> None:
    state = app.state
    runs = {target: load_run_state(app, target) for target in ("azure", "local")}
    for target, run in runs.items():
        if run is not None:
            freshness.restore(state, target, statuses(run), stale_steps(run))
    app.steps_changed()
    azure = runs.get("azure")
    if azure is not None:
        left = endpoints_left_running(azure)
        if left:
            state.results["endpoints_left"] = left
            app.notify(f"Endpoint {', '.join(left)} deployed by this tool is still running (and billed) — "
                       "delete it on the Cleanup step when you are done.", title="Reminder",
                       severity="warning", timeout=15)
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
