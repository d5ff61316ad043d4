"""Azure target — Cleanup: delete the endpoint (and its deployments) after confirmation, so nothing keeps
running and billing. Lists endpoints this tool deployed and never deleted, from the saved run state."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Static

from cvtriton_core.events import Event
from cvtriton_core.steps.registry import RunOptions
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.confirm import ConfirmScreen
from cvtriton_tui.screens.state import core_steps_available
from cvtriton_tui.widgets.event_log import EventLog

UNAVAILABLE = ("This pane does not delete yet: run `cvtriton-tui run --steps delete --delete endpoint` "
               "headless, or delete it with")


def delete_command(endpoint: str, resource_group: str, workspace: str) -> str:
    """The Azure CLI command that deletes ``endpoint`` (placeholders for what is not set)."""
    return (f"az ml online-endpoint delete --name {endpoint or '<ENDPOINT_NAME>'} "
            f"--resource-group {resource_group or '<AZUREML_RESOURCE_GROUP>'} "
            f"--workspace-name {workspace or '<AZUREML_WORKSPACE>'} --yes")


class CleanupPane(StepPane):
    step_id = "cleanup"
    intro = "Deletes the endpoint and its deployments. Endpoints bill per hour while they exist."
    needs_to_run = ("AZURE_SUBSCRIPTION_ID", "AZUREML_RESOURCE_GROUP", "AZUREML_WORKSPACE", "ENDPOINT_NAME")
    independent = True     # an endpoint left running must be deletable whatever else is done

    def compose(self) -> ComposeResult:
        yield self.heading()
        yield Static("", id="cleanup-note", classes="unavailable")
        yield Static("", id="left-running")
        with Horizontal(classes="buttons"):
            yield Button("Delete endpoint… (F5)", id="cleanup-run", variant="error", classes="run-button")
        yield EventLog(id="cleanup-log", title="Cleanup log")

    def setup(self) -> None:
        self.entered()

    def endpoint(self) -> str:
        left = self.state.results.get("endpoints_left") or []
        return left[0] if left else self.state.value("ENDPOINT_NAME")

    def entered(self) -> None:
        self.available = core_steps_available("cleanup") and bool(self.endpoint())
        note = self.query_one("#cleanup-note", Static)
        note.display = not core_steps_available("cleanup")
        command = delete_command(self.endpoint(), self.state.value("AZUREML_RESOURCE_GROUP"),
                                 self.state.value("AZUREML_WORKSPACE"))
        note.update(Text.assemble((UNAVAILABLE + "\n", "yellow"), (command, "bold"),
                                  ("\nor in the Azure ML studio.", "yellow")))
        left = self.state.results.get("endpoints_left") or []
        text = Text()
        if left:
            text.append("Still running from an earlier run: ", style="bold yellow")
            text.append(", ".join(left))
        elif self.endpoint():
            text.append(f"Endpoint to delete: {self.endpoint()}")
        else:
            text.append("No endpoint recorded by this tool.", style="dim")
        self.query_one("#left-running", Static).update(text)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cleanup-run":
            self.request_run()

    def run_step(self) -> None:
        if not core_steps_available("cleanup"):
            self.app.notify(UNAVAILABLE, severity="warning")
            return
        name = self.endpoint()
        if not name:
            self.app.notify("No endpoint to delete.")
            return
        self.app.push_screen(ConfirmScreen("Delete endpoint?", f"Delete endpoint {name} and all its deployments? "
                                           "This cannot be undone.", yes="Delete"), self._confirmed)

    def _confirmed(self, yes: bool | None) -> None:
        if yes:
            self.start_run(["cleanup"], RunOptions(), title="Cleanup")

    def settings_overrides(self) -> dict[str, str]:
        return {"ENDPOINT_NAME": self.endpoint()} if self.endpoint() else {}

    def handle_event(self, event: Event) -> None:
        self.query_one(EventLog).add_event(event)

    def run_finished(self, ok: bool, cancelled: bool) -> None:
        if ok:
            self.state.results.pop("endpoints_left", None)
            self.entered()
