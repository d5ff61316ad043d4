"""Azure target — Cleanup: the endpoints this tool created that still exist (found in Azure ML by their tag, so
endpoints made from another folder or machine are listed too), and the core's ``delete`` step for one of them
— the whole endpoint with its deployments, or one deployment — after a confirmation that names exactly what
goes. Endpoints bill per hour while they exist."""

from __future__ import annotations

from functools import partial
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Label, RadioSet, Select, Static

from cvtriton_core.events import Event, StepFinished
from cvtriton_core.settings import ENDPOINT_NAME
from cvtriton_core.steps.azureml_options import AzureOptions
from cvtriton_core.steps.registry import RunOptions
from cvtriton_tui.screens import azure_reads
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.confirm import ConfirmScreen
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.marked_radio import MarkedRadioButton

FOUND = "tool_endpoints"              # state.results: EndpointInfo list read from Azure ML
FOUND_PROBLEM = "tool_endpoints_problem"


def delete_command(endpoint: str, resource_group: str, workspace: str) -> str:
    """The Azure CLI command that deletes ``endpoint`` (placeholders for what is not set)."""
    return (f"az ml online-endpoint delete --name {endpoint or '<ENDPOINT_NAME>'} "
            f"--resource-group {resource_group or '<AZUREML_RESOURCE_GROUP>'} "
            f"--workspace-name {workspace or '<AZUREML_WORKSPACE>'} --yes")


def record_found(state: Any, found: list[Any] | None, problem: str = "") -> None:
    """What a listing of this tool's endpoints gave (``found`` None: it failed with ``problem``)."""
    if found is None:
        state.results[FOUND_PROBLEM] = problem
        return
    state.results[FOUND] = list(found)
    state.results.pop(FOUND_PROBLEM, None)


class CleanupPane(StepPane):
    step_id = "cleanup"
    intro = ("Deletes an endpoint this tool created (with its deployments), or one of its deployments. Endpoints "
             "bill per hour while they exist.")
    needs_to_run = ("AZURE_SUBSCRIPTION_ID", "AZUREML_RESOURCE_GROUP", "AZUREML_WORKSPACE")
    independent = True     # an endpoint left running must be deletable whatever else is done

    def __init__(self) -> None:
        super().__init__()
        self.overview: Any = None         # EndpointOverview of the chosen endpoint (None: not read)

    def compose(self) -> ComposeResult:
        yield self.heading()
        yield Static("", id="tool-endpoints")
        with Horizontal(classes="form-row"):
            yield Label("Endpoint", classes="row-label")
            yield Select[str]([], prompt="(no endpoint)", allow_blank=True, id="cleanup-endpoint")
        with RadioSet(id="delete-what"):
            yield MarkedRadioButton("The whole endpoint, with all its deployments",
                                    value=self.state.delete_target == "endpoint", id="delete-endpoint")
            yield MarkedRadioButton("One deployment (it must have 0% of the traffic)",
                                    value=self.state.delete_target == "deployment", id="delete-deployment")
        with Horizontal(classes="form-row", id="deployment-row"):
            yield Label("Deployment", classes="row-label")
            yield Select[str]([], prompt="(no deployment)", allow_blank=True, id="cleanup-deployment")
        yield Static("", id="cleanup-detail")
        with Horizontal(classes="buttons"):
            yield Button("Delete… (F5)", id="cleanup-run", variant="error", classes="run-button")
            yield Button("Cancel (F8)", id="cleanup-cancel", classes="cancel-button")
            yield Button("List again", id="cleanup-refresh")
        yield EventLog(id="cleanup-log", title="Cleanup log")
        yield Static("", id="cleanup-note")

    # ------------------------------------------------------------------ what exists
    def setup(self) -> None:
        self.query_one("#deployment-row").display = self.state.delete_target == "deployment"
        self.show_found()
        self.show_hint()

    def entered(self) -> None:
        """Shown: list again what exists (a deploy since the last listing may have created an endpoint)."""
        self.show_found()
        self.show_hint()
        if not self.running and azure_reads.workspace_known(self.state.effective_settings()):
            self.list_again()

    def show_hint(self) -> None:
        command = delete_command(self.endpoint() or self.state.value("ENDPOINT_NAME"),
                                 self.state.value("AZUREML_RESOURCE_GROUP"),
                                 self.state.value("AZUREML_WORKSPACE"))
        self.query_one("#cleanup-note", Static).update(Text.assemble(
            ("The same from a shell: ", "dim"), (command, ""), (" (or the Azure ML studio).", "dim")))

    def found_names(self) -> list[str]:
        return [e.name for e in self.state.results.get(FOUND) or []]

    def show_found(self) -> None:
        """The list of this tool's endpoints (as last read from Azure ML) and the endpoint choice."""
        results = self.state.results
        found = results.get(FOUND)
        text = Text()
        problem = results.get(FOUND_PROBLEM)
        if found is None and not problem:
            if azure_reads.workspace_known(self.state.effective_settings()):
                text.append("Listing the endpoints this tool created in Azure ML…", style="dim")
            else:
                text.append("Set the Azure ML workspace on the Settings step to list the endpoints this tool "
                            "created.", style="dim")
        elif found:
            text.append(f"{len(found)} endpoint(s) created by this tool still exist (as Azure ML lists them; "
                        "billed while they run):\n", style="bold yellow")
            lines = [f"  • {e.name} — {e.state}, "
                     + (azure_reads.split_text(dict(e.traffic)) if e.traffic else "no traffic") for e in found]
            text.append("\n".join(lines))
        elif found is not None:
            text.append("No endpoint created by this tool exists in the workspace (read from Azure ML).", style="green")
        if problem:
            text.append(("\n" if text.plain else "") + problem, style="dim")
        self.query_one("#tool-endpoints", Static).update(text)
        names = list(self.found_names())
        current = self.state.value("ENDPOINT_NAME")
        if found is None and current and ENDPOINT_NAME.match(current):    # not listed (yet): the setting's
            names.append(current)
        select = self.query_one("#cleanup-endpoint", Select)
        chosen = select.value if isinstance(select.value, str) else None
        select.set_options([(n, n) for n in names])
        if chosen in names:
            select.value = chosen
        elif names:
            select.value = names[0]
        if not names:         # nothing left to choose: no earlier read of an endpoint stays on screen
            self.overview = None
            self.query_one("#cleanup-detail", Static).update("")
            self.query_one("#cleanup-deployment", Select).set_options([])

    def endpoint(self) -> str:
        select = self.query_one("#cleanup-endpoint", Select)
        return select.value if isinstance(select.value, str) else ""

    def look(self, endpoint: str) -> None:
        settings = self.state.effective_settings()
        if not azure_reads.workspace_known(settings):
            return
        self.query_one("#cleanup-detail", Static).update(Text(f"Reading endpoint {endpoint}…", style="dim"))
        self.run_worker(partial(self._look, settings, endpoint), group="cleanup-look", exclusive=True, exit_on_error=False,
                        description="Reading the endpoint")

    async def _look(self, settings: Any, endpoint: str) -> None:
        try:
            overview = await azure_reads.read_endpoint(settings, endpoint)
        except Exception as exc:  # noqa: BLE001 - a look is extra: one line, never a dialog
            if endpoint == self.endpoint():
                self.overview = None
                self.query_one("#cleanup-detail", Static).update(
                    Text(f"Could not read endpoint {endpoint}: {azure_reads.failure_line(exc)}", style="yellow"))
            return
        if endpoint == self.endpoint():
            self.show_overview(overview)

    def show_overview(self, overview: Any) -> None:
        self.overview = overview
        detail = self.query_one("#cleanup-detail", Static)
        select = self.query_one("#cleanup-deployment", Select)
        if overview.endpoint is None:
            detail.update(Text(f"Endpoint {self.endpoint()} does not exist (nothing to delete).", style="dim"))
            select.set_options([])
            return
        split = overview.traffic
        deployments = ", ".join(f"{d.name} ({d.state}, {split.get(d.name, 0)}%)" for d in overview.deployments)
        detail.update(Text(f"Endpoint {self.endpoint()} is {overview.endpoint.state}; deployments: "
                           f"{deployments or 'none'}."))
        chosen = select.value if isinstance(select.value, str) else None
        names = [d.name for d in overview.deployments]
        select.set_options([(n, n) for n in names])
        idle = [n for n in names if not split.get(n)]
        if chosen in names:
            select.value = chosen
        elif idle or names:
            select.value = (idle or names)[0]

    def list_again(self) -> None:
        settings = self.state.effective_settings()
        if not azure_reads.workspace_known(settings):
            self.app.notify("Set the Azure ML workspace on the Settings step first.", severity="warning")
            return
        self.run_worker(partial(self._list, settings), group="cleanup-list", exclusive=True, exit_on_error=False,
                        description="Listing this tool's endpoints")

    async def _list(self, settings: Any) -> None:
        try:
            found = await azure_reads.find_tool_endpoints(settings)
        except Exception as exc:  # noqa: BLE001
            record_found(self.state, None, f"Could not list this tool's endpoints: {azure_reads.failure_line(exc)}")
        else:
            record_found(self.state, found)
        self.show_found()
        if self.endpoint():
            self.look(self.endpoint())

    # ------------------------------------------------------------------ choices
    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "cleanup-endpoint":
            self.overview = None
            self.show_hint()
            if isinstance(event.value, str) and not self.running:
                self.look(event.value)

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        if event.radio_set.id == "delete-what" and event.pressed.id:
            self.state.delete_target = event.pressed.id.removeprefix("delete-")
            self.query_one("#deployment-row").display = self.state.delete_target == "deployment"
            self.wizard.choices_changed()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        match event.button.id:
            case "cleanup-run":
                self.request_run()
            case "cleanup-cancel":
                self.wizard.action_cancel_run()
            case "cleanup-refresh":
                self.list_again()

    # ------------------------------------------------------------------ delete
    def run_step(self) -> None:
        name = self.endpoint()
        if not name:
            if self.state.results.get(FOUND) is not None:
                self.app.notify("No endpoint to delete: Azure ML lists none created by this tool (List again reads "
                                "the list anew).")
            else:
                self.app.notify("No endpoint to delete: this tool's endpoints are not listed yet (List again) and "
                                "ENDPOINT_NAME names no valid endpoint.", severity="warning")
            return
        if self.state.delete_target == "deployment":
            select = self.query_one("#cleanup-deployment", Select)
            deployment = select.value if isinstance(select.value, str) else ""
            if not deployment:
                self.app.notify(f"Choose the deployment of {name} to delete (List again reads them).",
                                severity="warning")
                return
            share = self.overview.traffic.get(deployment, 0) if self.overview is not None else None
            question = f"Delete deployment {deployment} of endpoint {name}?"
            question += (f"\n\nIt has {share}% of the traffic now; endpoint {name} and its other deployments stay."
                         if share is not None else f"\n\nEndpoint {name} and its other deployments stay.")
            question += " This cannot be undone."
            self.app.push_screen(ConfirmScreen("Delete deployment?", question, yes="Delete deployment"),
                                 lambda yes: self._confirmed(yes, name, deployment))
            return
        if self.overview is not None and self.overview.endpoint is not None:
            names = [d.name for d in self.overview.deployments]
            what = (f"and its deployment(s) {', '.join(names)}" if names else "(it has no deployment)")
        else:
            what = "and all its deployments"
        question = (f"Delete endpoint {name} {what}?\n\nIts scoring URI stops answering and its keys stop working. "
                    "This cannot be undone.")
        self.app.push_screen(ConfirmScreen("Delete endpoint?", question, yes="Delete endpoint"),
                             lambda yes: self._confirmed(yes, name, None))

    def _confirmed(self, yes: bool | None, endpoint: str, deployment: str | None) -> None:
        if not yes or self.wizard.main.refuse_run(self.step_id):
            return
        options = RunOptions(azure=AzureOptions(endpoint=endpoint, deployment=deployment,
                                                delete="deployment" if deployment else "endpoint",
                                                poll_s=azure_reads.POLL_S))
        self.query_one(EventLog).clear()
        self.start_run(["delete"], options, title="Cleanup")

    def handle_event(self, event: Event) -> None:
        self.query_one(EventLog).add_event(event)
        match event:
            case StepFinished(step="delete", result=result) if result is not None:
                if result.deployment is None:           # the endpoint went: keep the others the step listed
                    found = [e for e in self.state.results.get(FOUND) or [] if e.name in result.remaining]
                    record_found(self.state, found)
                self.show_found()

    def run_finished(self, ok: bool, cancelled: bool) -> None:
        self.overview = None
        self.list_again()       # what Azure ML says now

    def after_cancel(self, interrupted: list[str], values: dict[str, Any]) -> str:
        return "a delete Azure ML had already accepted goes on there — List again shows what is left"

    def quit_consequence(self) -> str:
        return "a delete Azure ML had already accepted goes on there"
