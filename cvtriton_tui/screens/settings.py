"""Step 1 — Settings: every variable of the ``.env`` file grouped by service, validated as you type, secrets
masked (Ctrl+R reveals), saved back atomically with a backup, a connection check per service, and the
choice of target: Azure (the whole pipeline) or Local (a local Triton on an exported or the sample model).

What the inputs hold is the truth: the unsaved edits are read from the inputs whenever they are used (save,
quit, a run starting), not only from their ``Input.Changed`` messages, which can still be on their way when
a key binding such as Ctrl+S runs (see ``sync_edits``). An invalid value is shown and warned about on save;
it blocks only the steps that read it (``StepPane.needs_to_run``)."""

from __future__ import annotations

import asyncio
from itertools import groupby
from typing import Any, Iterator

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Input, Label, RadioSet, Static, Switch

from cvtriton_core.errors import UserError
from cvtriton_core.redact import redact
from cvtriton_core.settings import BY_NAME, VARIABLES, Settings, save_env
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.state import customvision_available
from cvtriton_tui.widgets.marked_radio import MarkedRadioButton
from cvtriton_tui.widgets.setting_field import SettingField, field_problem

SERVICE_OF_GROUP = {"Azure ML": "azureml", "Custom Vision resource": "customvision", "Triton": "triton"}
SERVICE_TITLES = {"azureml": "Azure ML", "customvision": "Custom Vision", "triton": "local Triton"}
GROUPS = [(group, tuple(variables)) for group, variables in groupby(VARIABLES, key=lambda v: v.group)]


class SettingsPane(StepPane):
    step_id = "settings"
    intro = ("Values are read from the settings file shown below; * marks what the chosen target needs. "
             "Changes are used at once and written to the file when you save (Ctrl+S), keeping a .bak copy.")

    class ConnectionChecked(Message):
        """The result of a per-service connection check (``text`` is one redacted line)."""

        def __init__(self, service: str, ok: bool, text: str, values: tuple[str, ...]) -> None:
            super().__init__()
            self.service = service
            self.ok = ok
            self.text = text
            self.values = values      # what the service's settings held when the check started

    class TargetChanged(Message):
        """The user switched between the Azure and the Local target: the list of steps changes."""

        def __init__(self, target: str) -> None:
            super().__init__()
            self.target = target

    def __init__(self) -> None:
        super().__init__()
        self._complete = asyncio.Event()
        self._completing = False

    def compose(self) -> ComposeResult:
        yield self.heading()
        yield Vertical(id="settings-body")       # filled right after the first paint (see ``complete``)

    def _body(self) -> Iterator[Widget]:
        state = self.state
        yield Static("", id="env-file")
        yield RadioSet(
            MarkedRadioButton("Azure — Custom Vision project → Triton on an Azure ML endpoint",
                              value=state.target == "azure", id="target-azure"),
            MarkedRadioButton("Local — serve an exported model (or the sample) in Triton on this machine; no Azure",
                              value=state.target == "local", id="target-local"),
            id="target", compact=True)
        yield Horizontal(Switch(value=state.reveal_secrets, id="reveal"), Label("Show secrets (Ctrl+R)", id="reveal-label"),
                         id="reveal-row")
        for group, variables in GROUPS:
            yield from self._group(group, variables)
        yield Horizontal(Button("Save (Ctrl+S)", id="save", variant="primary"), Button("Reload from file", id="reload"),
                         classes="buttons")

    def _group(self, group: str, variables: tuple[Any, ...]) -> Iterator[Widget]:
        state = self.state
        service = SERVICE_OF_GROUP.get(group)
        check = [Button(f"Check {SERVICE_TITLES[service]}", id=f"check-{service}", compact=True)] if service else []
        yield Horizontal(Label(Text(group, style="bold"), classes="group-title"), *check, classes="group-head")
        if service:
            yield Label("", id=f"status-{service}", classes="check-status")
        for var in variables:
            yield SettingField(var, state.value(var.name), target=state.target, reveal=state.reveal_secrets)

    def setup(self) -> None:
        self.call_after_refresh(self.complete)

    async def complete(self) -> None:
        """Build the step's body: the file, the target, every settings group (once; callers wait until it is
        in). The first paint shows the wizard with this step's heading; its ~100 widgets — 19 inputs — come
        one frame later: building them first made the wizard's first paint twice as slow as a bare Textual
        app's, and nothing can be typed in that time anyway."""
        if self._completing:
            await self._complete.wait()
            return
        self._completing = True
        try:
            await self.query_one("#settings-body", Vertical).mount_all(list(self._body()))
            self._show_file()
            for field in self.query(SettingField):
                field.validate_value()
        finally:
            self._complete.set()

    def _show_file(self) -> None:
        text = Text(f"Settings file: {self.state.env_file}")
        if not self.state.env_file.exists():
            text.append(" · ")
            text.append("not found — saving creates it", style="yellow")
        if self.state.edits:
            text.append(" · ")
            text.append(f"● {len(self.state.edits)} unsaved change(s)", style="bold yellow")
        self.query_one("#env-file", Static).update(text)

    # editing ------------------------------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        field = next((a for a in event.input.ancestors if isinstance(a, SettingField)), None)
        if field is None:
            return
        self._take(field)
        field.validate_value()
        self._show_file()
        service = SERVICE_OF_GROUP.get(field.var.group)
        if service:
            self._clear_check(service)
        self.wizard.choices_changed()

    def _take(self, field: SettingField) -> None:
        self.state.set_value(field.var.name, field.value)

    def sync_edits(self) -> None:
        """Read every input into the unsaved edits. Keys reach an Input before the Input.Changed messages
        they cause reach this pane, so a binding (Ctrl+S, Ctrl+Q) pressed right after a burst of typing can
        run before the last keystroke's message arrives: whoever uses the edits calls this first."""
        for field in self.query(SettingField):
            self._take(field)

    def problem_for(self, names: tuple[str, ...]) -> str | None:
        """The first problem (missing for the target, or invalid) among the settings ``names``."""
        self.sync_edits()
        for name in names:
            problem = field_problem(BY_NAME[name], self.state.value(name), self.state.target)
            if problem:
                self._focus_name = name
                return problem
        return None

    def focus_problem(self) -> None:
        """Put the cursor into the field the last ``problem_for`` named."""
        name = getattr(self, "_focus_name", "")
        for field in self.query(SettingField):
            if field.var.name == name:
                field.validate_value()
                field.query_one(Input).focus()
                field.scroll_visible()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self.apply_target("azure" if event.pressed.id == "target-azure" else "local")

    def apply_target(self, target: str) -> None:
        if target == self.state.target:
            return
        self.state.target = target
        for field in self.query(SettingField):
            field.set_target(target)
            field.validate_value()
        self.post_message(self.TargetChanged(target))
        self.wizard.choices_changed()

    def on_switch_changed(self, event: Switch.Changed) -> None:
        if event.switch.id == "reveal":
            self.state.reveal_secrets = event.value
            for field in self.query(SettingField):
                field.set_reveal(event.value)

    def toggle_reveal(self) -> None:
        switch = self.query_one("#reveal", Switch)
        switch.value = not switch.value

    def select_target(self, target: str) -> None:
        self.query_one(f"#target-{target}", MarkedRadioButton).value = True
        self.apply_target(target)

    # buttons ------------------------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        button = event.button.id or ""
        if button == "save":
            self.action_save()
        elif button == "reload":
            self.reload()
        elif button.startswith("check-"):
            self.check(button.removeprefix("check-"))

    def action_save(self) -> None:
        self.sync_edits()
        if not self.state.edits:
            self.app.notify("Nothing to save: the settings file already holds these values.")
            return
        self._save(dict(self.state.edits))

    def invalid_edits(self, changes: dict[str, str]) -> list[str]:
        """One line per changed value that is not valid (a value being empty is not a problem here)."""
        return [problem for name, value in changes.items() if value
                and (problem := field_problem(BY_NAME[name], value, self.state.target))]

    @work(group="save", exclusive=True, exit_on_error=False, description="Saving settings")
    async def _save(self, changes: dict[str, str]) -> bool:
        path = self.state.env_file
        try:
            backup = await asyncio.to_thread(save_env, path, changes)
            self.state.settings = await asyncio.to_thread(Settings.load, path)
        except OSError as exc:
            raise UserError(f"cannot write {path} ({exc.strerror or type(exc).__name__})",
                            "check the folder is writable") from None
        for name, value in changes.items():
            if self.state.edits.get(name) == value:
                self.state.edits.pop(name)
        self._show_file()
        note = f" (previous file kept as {backup.name})" if backup else ""
        self.app.notify(f"Saved {len(changes)} setting(s) to {path.name}{note}.")
        invalid = self.invalid_edits(changes)
        if invalid:
            self.app.notify("\n".join(invalid) + "\nSteps that read it stay blocked until it is fixed.",
                            title="Saved, but not valid", severity="warning", timeout=12)
        self.wizard.choices_changed()
        return True

    def reload(self) -> None:
        """Read the file again, dropping unsaved edits (the Reload button)."""
        if self.wizard.reload_settings(keep_edits=False):
            self.app.notify("Settings reloaded from the file; unsaved changes dropped.")

    def show_values(self, names: tuple[str, ...] | None = None) -> None:
        """Show the state's values (saved file + unsaved edits) in the fields (``names``, default all), e.g.
        after a step saved IDs or another step edited a setting (the export flavour, the endpoint name)."""
        for field in self.query(SettingField):
            if names is not None and field.var.name not in names:
                continue
            widget = field.query_one(Input)
            if widget.value.strip() != self.state.value(field.var.name):
                widget.value = self.state.value(field.var.name)
            field.validate_value()
        self._show_file()

    # connection checks --------------------------------------------------------------------------------
    def _service_values(self, service: str) -> tuple[str, ...]:
        return tuple(self.state.value(v.name) for v in VARIABLES if SERVICE_OF_GROUP.get(v.group) == service)

    def check(self, service: str) -> None:
        status = self.query_one(f"#status-{service}", Label)
        status.add_class("shown")
        status.update(Text(f"checking {SERVICE_TITLES[service]}…", style="dim"))
        self.sync_edits()
        self._check(service, self._service_values(service))

    def _clear_check(self, service: str) -> None:
        """A value the check used was edited: its result no longer says anything about the new value."""
        status = self.query_one(f"#status-{service}", Label)
        if status.has_class("shown"):
            status.remove_class("shown")
            status.update("")

    def _check(self, service: str, values: tuple[str, ...]) -> None:
        self.run_worker(self._check_service(service, values), group=f"check-{service}", exclusive=True,
                        exit_on_error=False, description=f"{SERVICE_TITLES[service].capitalize()} check")

    async def _check_service(self, service: str, values: tuple[str, ...]) -> None:
        try:
            text, ok = await _check_service(service, self.state.effective_settings()), True
        except UserError as exc:
            text, ok = exc.one_line(), False
        self.post_message(self.ConnectionChecked(service, ok, redact(text), values))

    def on_settings_pane_connection_checked(self, message: ConnectionChecked) -> None:
        if message.values != self._service_values(message.service):
            return          # edited while the check ran: the result is about values no longer there
        mark, style = ("✔ ", "green") if message.ok else ("✖ ", "red")
        status = self.query_one(f"#status-{message.service}", Label)
        status.add_class("shown")
        status.update(Text(mark + message.text, style=style))
        self.wizard.record_note(f"check {message.service}: {'ok' if message.ok else 'failed'}: {message.text}")


async def _check_service(service: str, settings: Settings) -> str:
    """One line describing a working connection; ``UserError`` naming the problem otherwise."""
    if service == "customvision":
        if not customvision_available():
            raise UserError("the Custom Vision adapter is not available in this build yet",
                            "use the Local target meanwhile")
        from cvtriton_core.adapters.customvision import CustomVisionService

        return await CustomVisionService.from_settings(settings).check_connection()
    if service == "azureml":
        return await asyncio.to_thread(_check_workspace, settings)
    return await asyncio.to_thread(_find_local_triton)


def _check_workspace(settings: Settings) -> str:
    """Sign in (DefaultAzureCredential) and read the workspace and its registry from Resource Manager."""
    from cvtriton_core.adapters.azureml import AzureML
    from cvtriton_core.steps.azureml_common import WORKSPACE_SETTINGS

    settings.require(*WORKSPACE_SETTINGS)
    settings.require_valid(*WORKSPACE_SETTINGS)
    az = AzureML(settings["AZURE_SUBSCRIPTION_ID"], settings["AZUREML_RESOURCE_GROUP"], settings["AZUREML_WORKSPACE"])
    workspace = az.workspace()
    registry = az.registry(workspace.registry_id).login_server if workspace.registry_id else "no registry attached"
    return f"workspace {workspace.name} in {workspace.location}; registry {registry}"


def _find_local_triton() -> str:
    """Where the Triton binary of the ``nvidia-pytriton`` wheel is: the Local target can run (ServerError if not)."""
    from cvtriton_triton.backends import find_tritonserver

    install = find_tritonserver()
    return f"tritonserver found in {install.binary.parent.parent.parent.name}/{install.binary.parent.parent.name} " \
           f"with the Python {install.stub.parent.name} backend stub — the Local target can run"
