"""Azure target — Deploy: endpoint and deployment names (validated as Azure ML requires), instance type and
count, auth mode and traffic become the core's ``deploy`` step (after ``registry-login`` and ``push``, which put
the image Package & build made into the workspace's registry). The provisioning states Azure ML reports fill a
timeline and the container log streams below it; a failure shows the service's reason, the last log lines and
what to do, as the core's events carry them.

Safe rollout: what the endpoint serves now is read from Azure ML when the pane is shown. Next to a live
deployment the new one starts at 0% of the traffic; after testing it (Test results), a traffic shift the user
confirms — e.g. 10%, then 100% — runs the core's ``traffic`` step, and Roll back puts the previous split back.
The old deployment stays until it is deleted on Cleanup. The split shown is always one Azure ML reported (a
read, or a finished deploy or traffic step), never one merely asked for."""

from __future__ import annotations

from functools import partial
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, RadioSet, Select, Static

from cvtriton_core.deployment_mode import DEPLOYMENT_MODES, NO_CODE
from cvtriton_core.events import Event, LayerProgress, StateChanged, StepFailed, StepFinished, StepStarted
from cvtriton_core.settings import ENDPOINT_NAME
from cvtriton_core.steps.azureml_options import AzureOptions
from cvtriton_core.steps.registry import RunOptions
from cvtriton_tui.screens import azure_reads
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.confirm import ConfirmScreen
from cvtriton_tui.screens.state import INSTANCE_TYPES, deployment_mode
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.marked_radio import MarkedRadioButton
from cvtriton_tui.widgets.timeline import Timeline


def deploy_steps(mode: str) -> list[str]:
    """The core steps Deploy runs. Container mode pushes first (registry-login, push): the endpoint pulls only
    from the workspace's registry, and a push of an image the registry already has sends no layer again.
    No-code deploys the model repository Package & build wrote (registered as a triton_model asset)."""
    return ["deploy"] if mode == NO_CODE else ["registry-login", "push", "deploy"]


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


def share_problem(raw: str) -> str | None:
    if not raw.strip().isdigit() or not 1 <= int(raw) <= 100:
        return "the share to shift must be a whole percentage from 1 to 100"
    return None


class DeployPane(StepPane):
    step_id = "deploy"
    intro = ("Creates (or updates) the Azure ML online endpoint and a Triton deployment, then routes traffic. The "
             "endpoint name is the ENDPOINT_NAME setting and the mode the DEPLOYMENT_MODE setting (saved with Ctrl+S).")
    needs_to_run = ("AZURE_SUBSCRIPTION_ID", "AZUREML_RESOURCE_GROUP", "AZUREML_WORKSPACE", "AZURE_LOCATION",
                    "ENDPOINT_NAME", "MODEL_NAME", "MODEL_VERSION")

    def __init__(self) -> None:
        super().__init__()
        self.overview: Any = None          # the latest EndpointOverview read from Azure ML (None: not read)
        self.split: dict[str, int] = {}    # the endpoint's traffic split as Azure ML last reported it
        self.previous_split: dict[str, int] | None = None   # before the latest change this session made
        self.deployed: str | None = None   # the deployment this pane's latest deploy made
        self.run_kind = ""                 # "deploy" | "traffic": what the running run does
        self.following: tuple[str, str, str] | None = None   # (resource, name, state) the run saw last
        self.started_steps: set[str] = set()                   # the core steps the run started
        self._last_run: tuple[list[str], RunOptions, str, str] | None = None
        self._traffic_chosen = False       # the user typed a traffic share in this session (keep it)
        self._traffic_by_pane: str | None = None   # the value the pane itself put into the traffic field

    def compose(self) -> ComposeResult:
        s = self.state
        yield self.heading()
        yield Static("", id="endpoint-status")
        with Horizontal(classes="form-row"):
            yield Label("Endpoint name", classes="row-label")
            yield Input(s.value("ENDPOINT_NAME"), placeholder="ENDPOINT_NAME, e.g. cv-triton-demo", id="endpoint-name",
                        max_length=32)
        with Horizontal(classes="form-row"):
            yield Label("Deployment mode", classes="row-label")
            with RadioSet(id="deployment-mode"):
                for mode in DEPLOYMENT_MODES.values():
                    yield MarkedRadioButton(mode.title, value=deployment_mode(s) == mode.name,
                                            id=f"mode-{mode.name}")
        yield Static("", id="mode-note")
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
            yield Button("Read the endpoint again", id="endpoint-refresh")
        with Vertical(id="deploy-failure-box"):
            yield Static("", id="deploy-failure")
            with Horizontal(classes="buttons"):
                yield Button("Go to Cleanup", id="goto-cleanup", variant="warning")
        with Vertical(id="traffic-box"):
            yield Static("", id="traffic-split")
            with Horizontal(classes="form-row"):
                yield Label("Shift to", classes="row-label", id="shift-label")
                yield Input(s.traffic_share, id="traffic-share", type="integer", max_length=3)
                yield Label("%", classes="unit")
            with Horizontal(classes="buttons"):
                yield Button("Shift traffic…", id="traffic-shift", variant="primary")
                yield Button("Roll back…", id="traffic-rollback")
        with Horizontal(id="deploy-bottom"):
            yield Timeline(id="timeline")
            with Vertical(id="deploy-log-box"):
                yield EventLog(id="container-log", title="Deploy and container log")

    def setup(self) -> None:
        self.query_one("#deploy-failure-box").display = False
        self.query_one("#traffic-box").display = False
        self.entered()

    def entered(self) -> None:
        endpoint = self.query_one("#endpoint-name", Input)
        if endpoint.value.strip() != self.state.value("ENDPOINT_NAME"):   # edited on the Settings step
            endpoint.value = self.state.value("ENDPOINT_NAME")
        mode = deployment_mode(self.state)
        for button in self.query_one("#deployment-mode", RadioSet).query(MarkedRadioButton):
            if button.id == f"mode-{mode}" and not button.value:   # edited on the Settings step
                button.value = True
        self.show_mode()
        self._validate()
        if not self.running:
            self.look()

    def show_mode(self) -> None:
        """The chosen mode's cost and limits, one line each, and what Deploy runs for it."""
        mode = DEPLOYMENT_MODES.get(deployment_mode(self.state))
        note = Text()
        if mode is None:
            note.append("DEPLOYMENT_MODE is not one of " + " or ".join(DEPLOYMENT_MODES) + ": choose one above.",
                        style="red")
        else:
            note.append("Costs: ", style="bold")
            note.append(mode.costs + "\n")
            note.append("Cannot: ", style="bold")
            note.append(mode.cannot + "\n")
            note.append("Runs: " + ", ".join(deploy_steps(mode.name)), style="dim")
        self.query_one("#mode-note", Static).update(note)

    # ------------------------------------------------------------------ what the endpoint is now
    def look(self) -> None:
        """Read the endpoint from Azure ML (state, split, deployments) in the background."""
        settings = self.state.effective_settings()
        name = self.state.value("ENDPOINT_NAME")
        status = self.query_one("#endpoint-status", Static)
        if not azure_reads.workspace_known(settings) or not ENDPOINT_NAME.match(name):
            status.update(Text("Set the Azure ML workspace and a valid ENDPOINT_NAME on the Settings step to see "
                               "what the endpoint serves now.", style="dim"))
            return
        status.update(Text(f"Reading endpoint {name} from Azure ML…", style="dim"))
        self.run_worker(partial(self._look, settings, name), group="deploy-look", exclusive=True, exit_on_error=False,
                        description="Reading the endpoint")

    async def _look(self, settings: Any, name: str) -> None:
        try:
            overview = await azure_reads.read_endpoint(settings, name)
        except Exception as exc:  # noqa: BLE001 - a look is extra: one line, never a dialog
            if name == self.state.value("ENDPOINT_NAME"):
                self.query_one("#endpoint-status", Static).update(
                    Text(f"Could not read endpoint {name} from Azure ML: {azure_reads.failure_line(exc)}",
                         style="yellow"))
            return
        if name == self.state.value("ENDPOINT_NAME") and not self.running:
            self.show_overview(overview, fresh=True)

    def show_overview(self, overview: Any, *, fresh: bool = False) -> None:
        """What the endpoint is; ``fresh`` (just read, or another deployment named): the safe-rollout default
        applies again, else it is shown again after an edit of the traffic field."""
        self.overview = overview
        name = self.state.value("ENDPOINT_NAME")
        text = Text()
        if overview.endpoint is None:
            text.append(f"Endpoint {name} does not exist yet: Deploy creates it ({self.state.auth_mode} auth).",
                        style="dim")
            self.split = {}
        else:
            info = overview.endpoint
            self.split = overview.traffic
            text.append(f"Endpoint {name} ({info.auth_mode} auth) is {info.state} in Azure ML", style="bold")
            if overview.deployments:
                text.append(": " + ", ".join(f"{d.name} {d.state} on {d.instance_count} x {d.instance_type}"
                                             for d in overview.deployments) + ".")
            else:
                text.append(", with no deployment.")
            live = overview.live_besides(self.state.deployment_name)
            if live and fresh:
                self._default_to_zero()
            if live:
                name, share = self.state.deployment_name, self.state.traffic
                text.append(f"\nIt serves {azure_reads.split_text(live)} now. ", style="yellow")
                if share == "0":
                    text.append(f"Safe rollout: deployment {name} starts at 0% of the traffic; test it on Test "
                                "results (through its header), then shift traffic below. The old deployment stays "
                                "until you delete it on Cleanup.", style="yellow")
                else:
                    text.append(f"With {share}% here, deployment {name} takes that share as soon as it is ready, "
                                "untested; 0 deploys it without traffic (safe rollout).", style="bold yellow")
        self.query_one("#endpoint-status", Static).update(text)
        self.show_split()

    def _default_to_zero(self) -> None:
        """Next to a live deployment the new one gets 0% unless the user chose a share in this session."""
        field = self.query_one("#traffic", Input)
        if field.value.strip() != "0" and not self._traffic_chosen:
            self._traffic_by_pane = "0"
            field.value = "0"
            self.state.traffic = "0"

    def show_split(self) -> None:
        """The traffic box: the split Azure ML reported last, and the shift/roll-back controls once the
        endpoint has two deployments (or this session changed the split)."""
        box = self.query_one("#traffic-box")
        target = self.traffic_target()
        several = len(self.split) >= 2
        box.display = bool(self.split) and (several or self.previous_split is not None)
        text = Text()
        text.append("Traffic split (as Azure ML reports it): ", style="bold")
        text.append(azure_reads.split_text(self.split))
        if self.previous_split is not None:
            text.append(f"\nBefore the latest change: {azure_reads.split_text(self.previous_split)}", style="dim")
        self.query_one("#traffic-split", Static).update(text)
        self.query_one("#shift-label", Label).update(f"Shift {target} to")
        self.query_one("#traffic-shift", Button).disabled = self.running or not several
        self.query_one("#traffic-rollback", Button).disabled = self.running

    def traffic_target(self) -> str:
        """The deployment a shift gives traffic to: the one deployed last here, else the name entered."""
        return self.deployed or self.state.deployment_name

    # ------------------------------------------------------------------ form
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
                self.overview, self.split, self.previous_split = None, {}, None
                if self.ready and not self.running:
                    self.look()
            self._validate()
            return
        if event.input.id == "traffic-share":
            self.state.traffic_share = event.value.strip()
            return
        attr = {"deployment-name": "deployment_name", "instance-count": "instance_count",
                "traffic": "traffic"}.get(event.input.id or "")
        if attr:
            value = event.value.strip()
            if attr == "traffic" and value not in (self.state.traffic, self._traffic_by_pane):   # typed by the user
                self._traffic_chosen = True
                self._traffic_by_pane = None
            setattr(self.state, attr, event.value.strip())
            self._validate()
            self.wizard.choices_changed()
            if attr in ("deployment_name", "traffic") and self.overview is not None and not self.running:
                # another deployment name is another rollout: its traffic default is decided again
                self.show_overview(self.overview, fresh=attr == "deployment_name")

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "instance-type" and isinstance(event.value, str):
            self.state.instance_type = event.value
            self.wizard.choices_changed()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        if event.radio_set.id == "deployment-mode" and event.pressed.id:
            mode = event.pressed.id.removeprefix("mode-")
            if mode != deployment_mode(self.state):
                self.wizard.setting_changed("DEPLOYMENT_MODE", mode)
            self.show_mode()
            return
        if event.radio_set.id == "auth-mode" and event.pressed.id:
            self.state.auth_mode = event.pressed.id.removeprefix("auth-")
            self.wizard.choices_changed()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        match event.button.id:
            case "deploy-run":
                self.request_run()
            case "deploy-cancel":
                self.wizard.action_cancel_run()
            case "endpoint-refresh":
                if not self.running:
                    self.look()
            case "goto-cleanup":
                self.wizard.goto("cleanup")
            case "traffic-shift":
                self.ask_shift()
            case "traffic-rollback":
                self.ask_rollback()

    # ------------------------------------------------------------------ runs
    def _options(self, **azure: Any) -> RunOptions:
        return RunOptions(azure=AzureOptions(endpoint=self.state.value("ENDPOINT_NAME"), poll_s=azure_reads.POLL_S,
                                             **azure))

    def retry_run(self) -> None:
        """Retry repeats the run that failed: a traffic shift or roll back again, not a deploy."""
        last = self._last_run
        if last is not None and last[2] == "traffic":
            if not self.wizard.main.refuse_run(self.step_id):
                self._start(*last)
            return
        self.request_run()

    def _start(self, names: list[str], options: RunOptions, kind: str, title: str) -> None:
        self._last_run = (names, options, kind, title)
        self.query_one(Timeline).reset()
        self.query_one("#container-log", EventLog).clear()
        self.query_one("#deploy-failure-box").display = False
        self.run_kind = kind
        self.following = None
        self.started_steps = set()
        if self.start_run(names, options, title=title, record=kind == "deploy"):
            self.show_split()

    def run_step(self) -> None:
        s = self.state
        problems = self._validate()
        if problems:
            self.app.notify(next(iter(problems.values())), severity="warning")
            return
        mode = deployment_mode(s)
        if mode not in DEPLOYMENT_MODES:
            self.app.notify(f"DEPLOYMENT_MODE {mode!r} is not known: choose " + " or ".join(DEPLOYMENT_MODES)
                            + " on this step", severity="warning")
            return
        options = self._options(deployment=s.deployment_name, instance_type=s.instance_type,
                                instance_count=int(s.instance_count), auth_mode=s.auth_mode, traffic=s.traffic,
                                deployment_mode=mode)
        self._start(deploy_steps(mode), options, "deploy", "Deploy")

    def ask_shift(self) -> None:
        from cvtriton_core.errors import UserError
        from cvtriton_core.steps.azureml_common import complete_traffic

        problem = share_problem(self.query_one("#traffic-share", Input).value)
        if problem:
            self.app.notify(problem, severity="warning")
            return
        share, target = int(self.state.traffic_share), self.traffic_target()
        endpoint = self.state.value("ENDPOINT_NAME")
        try:
            asked = complete_traffic({target: share}, self.split)
        except UserError as exc:
            self.app.notify(exc.one_line(), severity="warning")
            return
        question = (f"Send {share}% of endpoint {endpoint}'s traffic to deployment {target}?\n\n"
                    f"Now (as Azure ML reports it): {azure_reads.split_text(self.split)}\n"
                    f"Asked for: {azure_reads.split_text(asked)}\n\n"
                    "Requests start reaching it as soon as Azure ML applies the change. Roll back puts the current "
                    "split back.")
        self.app.push_screen(ConfirmScreen("Shift traffic?", question, yes="Shift traffic", danger=False),
                             lambda yes: self._shift(yes, target, share))

    def _shift(self, yes: bool | None, target: str, share: int) -> None:
        if yes and not self.wizard.main.refuse_run(self.step_id):
            self._start(["traffic"], self._options(deployment=target, traffic=f"{target}={share}"), "traffic",
                        "Shift traffic")

    def ask_rollback(self) -> None:
        endpoint = self.state.value("ENDPOINT_NAME")
        back = (azure_reads.split_text(self.previous_split) if self.previous_split is not None
                else "the split before the latest change this work folder recorded")
        question = (f"Roll endpoint {endpoint}'s traffic back?\n\nNow (as Azure ML reports it): "
                    f"{azure_reads.split_text(self.split)}\nBack to: {back}")
        self.app.push_screen(ConfirmScreen("Roll back traffic?", question, yes="Roll back", danger=False),
                             self._rollback)

    def _rollback(self, yes: bool | None) -> None:
        if yes and not self.wizard.main.refuse_run(self.step_id):
            self._start(["traffic"], self._options(rollback=True), "traffic", "Roll back traffic")

    def handle_event(self, event: Event) -> None:
        self.query_one(Timeline).apply(event)
        if not isinstance(event, LayerProgress):          # the push's layers: Package & build shows those
            self.query_one("#container-log", EventLog).add_event(event)
        match event:
            case StepStarted(step=step):
                self.started_steps.add(step)
            case StateChanged(resource=resource, name=name, state=state):
                self.following = (resource, name, state)
            case StepFinished(step="deploy", result=result) if result is not None:
                self.state.results["deploy"] = result
                self.deployed = result.deployment
                self.split = dict(result.traffic)
                self.show_split()
            case StepFinished(step="traffic", result=result) if result is not None:
                self.split = dict(result.traffic)
                if not result.skipped:
                    self.previous_split = dict(result.previous)
                self.show_split()
            case StepFailed(cancelled=False, message=message, details=details, exit_code=code, step=step):
                # exit code 2: refused by a check before anything was created; otherwise Azure ML may hold
                # what the deploy created (the message says what)
                self.show_failure(message, details, created=step == "deploy" and code != 2)

    def show_failure(self, message: str, details: str, *, created: bool) -> None:
        text = Text()
        text.append("✖ " + message, style="bold red")
        if details:
            text.append("\n" + details.rstrip(), style="")
        if created:
            text.append("\nWhat was created stays in Azure ML until it is deleted: Cleanup lists this tool's endpoints "
                        "and deletes the deployment or the whole endpoint.", style="yellow")
        self.query_one("#deploy-failure", Static).update(text)
        self.query_one("#goto-cleanup").display = created
        self.query_one("#deploy-failure-box").display = True

    def run_finished(self, ok: bool, cancelled: bool) -> None:
        self.run_kind = ""
        self.look()          # what Azure ML says now (after a failure or a cancel, too)

    def watch_running(self) -> None:
        super().watch_running()
        if self.ready:
            self.show_split()

    def after_cancel(self, interrupted: list[str], values: dict[str, Any]) -> str:
        """Cancelling stops following, not Azure ML: say what it had accepted and goes on there."""
        self.query_one(Timeline).cancelled("cancelled here")
        resource, name, state = self.following or ("", "", "")
        if state in ("Creating", "Updating") and resource == "deployment":
            return (f"deployment {name} keeps provisioning in Azure ML: Deploy (F5) follows it again, Cleanup deletes "
                    "it — the endpoint is read again above")
        if state in ("Creating", "Updating") and resource == "endpoint":
            what = "the traffic change" if self.run_kind == "traffic" else f"endpoint {name}"
            return (f"{what} goes on in Azure ML ({state}): run it again to follow it — the endpoint is read again "
                    "above")
        if self.started_steps & {"deploy", "traffic"}:
            return "an operation Azure ML had already accepted may still complete there — the endpoint is read again above"
        return "nothing was created or changed in Azure ML"

    def quit_consequence(self) -> str:
        return "an operation Azure ML had already accepted may still complete there"

    def next_problem(self) -> str | None:
        problems = self._validate()
        return next(iter(problems.values()), None)
