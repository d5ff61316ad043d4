"""Azure target — Deploy: endpoint and deployment names (validated as Azure ML requires), instance type,
auth mode and traffic; then a timeline of provisioning states and the container log streaming live, with
cancel. The run goes through the core's ``deploy`` step once the Azure ML adapter registers it; until then
the pane says so plainly and keeps what you entered."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, RadioSet, Select, Static

from cvtriton_core.events import Event
from cvtriton_core.settings import ENDPOINT_NAME
from cvtriton_core.steps.registry import RunOptions
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.state import INSTANCE_TYPES, core_steps_available
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.marked_radio import MarkedRadioButton
from cvtriton_tui.widgets.timeline import Timeline

# The core's deploy step is registered and runs headless (cvtriton-tui run --steps deploy); this pane does
# not hand its fields to it yet, so it must not run the step with defaults in their place.
PANE_DRIVES_STEP = False
UNAVAILABLE = ("This pane does not run the deploy yet: run it headless with `cvtriton-tui run --steps "
               "registry-login,push,deploy` (live state and container log in the terminal). What you enter here is "
               "kept and checked now.")


def deploy_problems(endpoint: str, deployment: str, count: str, traffic: str) -> dict[str, str]:
    """Problems per field id, each one line naming what to enter."""
    problems: dict[str, str] = {}
    if not ENDPOINT_NAME.match(endpoint):
        problems["endpoint-name"] = ("endpoint name must be 3-32 letters, digits or -, start with a letter "
                                     "and be unique in the region")
    if not ENDPOINT_NAME.match(deployment):
        problems["deployment-name"] = "deployment name must be 3-32 letters, digits or -, starting with a letter"
    if not count.isdigit() or not 1 <= int(count) <= 20:
        problems["instance-count"] = "instance count must be a whole number from 1 to 20"
    if not traffic.isdigit() or not 0 <= int(traffic) <= 100:
        problems["traffic"] = "traffic must be a whole percentage from 0 to 100"
    return problems


class DeployPane(StepPane):
    step_id = "deploy"
    intro = ("Creates (or updates) the Azure ML online endpoint and a Triton deployment of the pushed image, "
             "then routes traffic to it. The endpoint name is the ENDPOINT_NAME setting (saved with Ctrl+S).")
    needs_to_run = ("AZURE_SUBSCRIPTION_ID", "AZUREML_RESOURCE_GROUP", "AZUREML_WORKSPACE", "AZURE_LOCATION",
                    "ENDPOINT_NAME", "MODEL_NAME", "MODEL_VERSION")

    def compose(self) -> ComposeResult:
        s = self.state
        yield self.heading()
        yield Static(Text(UNAVAILABLE, style="yellow"), id="deploy-note", classes="unavailable")
        with Horizontal(classes="form-row"):
            yield Label("Endpoint name", classes="row-label")
            yield Input(s.value("ENDPOINT_NAME"), placeholder="ENDPOINT_NAME, e.g. cv-triton-demo", id="endpoint-name",
                        max_length=32)
        with Horizontal(classes="form-row"):
            yield Label("Deployment name", classes="row-label")
            yield Input(s.deployment_name, id="deployment-name", max_length=32)
        with Horizontal(classes="form-row"):
            yield Label("Instance type", classes="row-label")
            yield Select(INSTANCE_TYPES, value=s.instance_type, allow_blank=False, id="instance-type")
        with Horizontal(classes="form-row"):
            yield Label("Instance count", classes="row-label")
            yield Input(s.instance_count, id="instance-count", type="integer", max_length=2)
        with Horizontal(classes="form-row"):
            yield Label("Auth mode", classes="row-label")
            with RadioSet(id="auth-mode"):
                yield MarkedRadioButton("key", value=s.auth_mode == "key", id="auth-key")
                yield MarkedRadioButton("aml_token", value=s.auth_mode == "aml_token", id="auth-aml_token")
        with Horizontal(classes="form-row"):
            yield Label("Traffic to it (%)", classes="row-label")
            yield Input(s.traffic, id="traffic", type="integer", max_length=3)
        yield Static("", id="deploy-errors", classes="field-error")
        with Horizontal(classes="buttons"):
            yield Button("Deploy (F5)", id="deploy-run", variant="primary", classes="run-button")
            yield Button("Cancel (F8)", id="deploy-cancel", classes="cancel-button")
        with Horizontal(id="deploy-bottom"):
            yield Timeline(id="timeline")
            with Vertical(id="deploy-log-box"):
                yield EventLog(id="container-log", title="Container log")

    def setup(self) -> None:
        self.entered()

    def entered(self) -> None:
        self.available = PANE_DRIVES_STEP and core_steps_available("deploy")
        self.query_one("#deploy-note").display = not self.available
        endpoint = self.query_one("#endpoint-name", Input)
        if endpoint.value.strip() != self.state.value("ENDPOINT_NAME"):   # edited on the Settings step
            endpoint.value = self.state.value("ENDPOINT_NAME")
        self._validate()

    def _validate(self) -> dict[str, str]:
        s = self.state
        problems = deploy_problems(s.value("ENDPOINT_NAME"), s.deployment_name, s.instance_count, s.traffic)
        for field in ("endpoint-name", "deployment-name", "instance-count", "traffic"):
            self.query_one(f"#{field}", Input).set_class(field in problems, "invalid")
        self.query_one("#deploy-errors", Static).update(Text("\n".join(problems.values()), style="red"))
        return problems

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "endpoint-name":
            if event.value.strip() != self.state.value("ENDPOINT_NAME"):
                self.wizard.setting_changed("ENDPOINT_NAME", event.value.strip())
            self._validate()
            return
        attr = {"deployment-name": "deployment_name", "instance-count": "instance_count",
                "traffic": "traffic"}.get(event.input.id or "")
        if attr:
            setattr(self.state, attr, event.value.strip())
            self._validate()
            self.wizard.choices_changed()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "instance-type" and isinstance(event.value, str):
            self.state.instance_type = event.value
            self.wizard.choices_changed()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        if event.radio_set.id == "auth-mode" and event.pressed.id:
            self.state.auth_mode = event.pressed.id.removeprefix("auth-")
            self.wizard.choices_changed()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "deploy-run":
            self.request_run()
        elif event.button.id == "deploy-cancel":
            self.wizard.action_cancel_run()

    def run_step(self) -> None:
        if not (PANE_DRIVES_STEP and core_steps_available("deploy")):
            self.app.notify(UNAVAILABLE, severity="warning")
            return
        problems = self._validate()
        if problems:
            self.app.notify(next(iter(problems.values())), severity="warning")
            return
        self.query_one(Timeline).reset()
        self.query_one("#container-log", EventLog).clear()
        self.start_run(["deploy"], RunOptions(), title="Deploy")

    def handle_event(self, event: Event) -> None:
        self.query_one(Timeline).apply(event)
        self.query_one("#container-log", EventLog).add_event(event)

    def after_cancel(self, interrupted: list[str], values: dict[str, Any]) -> str:
        self.query_one(Timeline).cancelled("cancelled here")
        return "an operation Azure ML had already accepted may still complete there — check the endpoint"

    def quit_consequence(self) -> str:
        return "an operation Azure ML had already accepted may still complete there"

    def next_problem(self) -> str | None:
        problems = self._validate()
        return next(iter(problems.values()), None)
