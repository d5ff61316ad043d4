"""Step 1 — Settings: every variable of the ``.env`` file grouped by service, validated as you type, secrets
masked (Ctrl+R reveals), saved back atomically with a backup, a connection check per service, and the
choice of target: Azure (the whole pipeline) or Local (a local Triton on an exported or the sample model)."""

from __future__ import annotations

import asyncio
from functools import partial
from itertools import groupby

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static, Switch

from cvtriton_core.errors import UserError
from cvtriton_core.redact import redact
from cvtriton_core.settings import VARIABLES, Settings, save_env
from cvtriton_tui.messages import ConnectionChecked, TargetChanged
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.state import customvision_available
from cvtriton_tui.widgets.setting_field import SettingField

SERVICE_OF_GROUP = {"Azure ML": "azureml", "Custom Vision resource": "customvision", "Triton": "triton"}
SERVICE_TITLES = {"azureml": "Azure ML", "customvision": "Custom Vision", "triton": "local Triton"}


class SettingsPane(StepPane):
    step_id = "settings"
    intro = ("Values are read from the settings file shown below; * marks what the chosen target needs. "
             "Changes are used at once and written to the file when you save (Ctrl+S), keeping a .bak copy.")

    def compose(self) -> ComposeResult:
        state = self.state
        yield self.heading()
        yield Static("", id="env-file")
        with RadioSet(id="target", compact=True):
            yield RadioButton("Azure — Custom Vision project → Triton on an Azure ML endpoint",
                              value=state.target == "azure", id="target-azure")
            yield RadioButton("Local — serve an exported model (or the sample) in Triton on this machine; no Azure",
                              value=state.target == "local", id="target-local")
        with Horizontal(id="reveal-row"):
            yield Switch(value=state.reveal_secrets, id="reveal")
            yield Label("Show secrets (Ctrl+R)", id="reveal-label")
        for group, variables in groupby(VARIABLES, key=lambda v: v.group):
            service = SERVICE_OF_GROUP.get(group)
            with Horizontal(classes="group-head"):
                yield Label(Text(group, style="bold"), classes="group-title")
                if service:
                    yield Button(f"Check {SERVICE_TITLES[service]}", id=f"check-{service}", compact=True)
            if service:
                yield Label("", id=f"status-{service}", classes="check-status")
            for var in variables:
                yield SettingField(var, state.value(var.name), target=state.target, reveal=state.reveal_secrets)
        with Horizontal(classes="buttons"):
            yield Button("Save (Ctrl+S)", id="save", variant="primary")
            yield Button("Reload from file", id="reload")

    def setup(self) -> None:
        self._show_file()
        for field in self.query(SettingField):
            field.validate_value()

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
        name = field.var.name
        value = event.value.strip()
        if value == self.state.settings.raw(name):
            self.state.edits.pop(name, None)
        else:
            self.state.edits[name] = value
        field.validate_value()
        self._show_file()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self.apply_target("azure" if event.pressed.id == "target-azure" else "local")

    def apply_target(self, target: str) -> None:
        if target == self.state.target:
            return
        self.state.target = target
        for field in self.query(SettingField):
            field.set_target(target)
            field.validate_value()
        self.post_message(TargetChanged(target))

    def on_switch_changed(self, event: Switch.Changed) -> None:
        if event.switch.id == "reveal":
            self.state.reveal_secrets = event.value
            for field in self.query(SettingField):
                field.set_reveal(event.value)

    def toggle_reveal(self) -> None:
        switch = self.query_one("#reveal", Switch)
        switch.value = not switch.value

    def select_target(self, target: str) -> None:
        self.query_one(f"#target-{target}", RadioButton).value = True
        self.apply_target(target)

    def next_problem(self) -> str | None:
        for field in self.query(SettingField):
            problem = field.validate_value()
            if problem:
                field.query_one(Input).focus()
                return problem
        return None

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
        if not self.state.edits:
            self.app.notify("Nothing to save: the settings file already holds these values.")
            return
        self.run_worker(partial(self._save, dict(self.state.edits)), group="save", exclusive=True, exit_on_error=False)

    async def _save(self, changes: dict[str, str]) -> None:
        path = self.state.env_file
        try:
            backup = await asyncio.to_thread(save_env, path, changes)
            self.state.settings = await asyncio.to_thread(Settings.load, path)
        except (OSError, UserError) as exc:
            message = exc.one_line() if isinstance(exc, UserError) else \
                f"cannot write {path} ({exc.strerror or type(exc).__name__}) — check the folder is writable"
            self.wizard.show_error("Settings not saved", message)
            return
        for name, value in changes.items():
            if self.state.edits.get(name) == value:
                self.state.edits.pop(name)
        self._show_file()
        note = f" (previous file kept as {backup.name})" if backup else ""
        self.app.notify(f"Saved {len(changes)} setting(s) to {path.name}{note}.")

    def reload(self) -> None:
        """Read the file again, dropping unsaved edits (the Reload button)."""
        if self.wizard.reload_settings(keep_edits=False):
            self.app.notify("Settings reloaded from the file; unsaved changes dropped.")

    def show_values(self) -> None:
        """Show the state's values (saved file + unsaved edits) in every field, e.g. after a step saved IDs."""
        for field in self.query(SettingField):
            widget = field.query_one(Input)
            if widget.value != self.state.value(field.var.name):
                widget.value = self.state.value(field.var.name)
        self._show_file()

    # connection checks --------------------------------------------------------------------------------
    def check(self, service: str) -> None:
        status = self.query_one(f"#status-{service}", Label)
        status.add_class("shown")
        status.update(Text(f"checking {SERVICE_TITLES[service]}…", style="dim"))
        self.run_worker(partial(self._check, service), group=f"check-{service}", exclusive=True, exit_on_error=False)

    async def _check(self, service: str) -> None:
        try:
            text, ok = await _check_service(service, self.state.effective_settings()), True
        except UserError as exc:
            text, ok = exc.one_line(), False
        except Exception as exc:  # a service check must never crash the wizard
            text, ok = f"unexpected {type(exc).__name__}: {str(exc)[:200]} — see the logs", False
        self.post_message(ConnectionChecked(service, ok, redact(text)))

    def on_connection_checked(self, message: ConnectionChecked) -> None:
        mark, style = ("✔ ", "green") if message.ok else ("✖ ", "red")
        self.query_one(f"#status-{message.service}", Label).update(Text(mark + message.text, style=style))
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
        raise UserError("the Azure ML adapter is not available yet",
                        "deploy, endpoint test and cleanup will use it once it lands; the Local target works now")
    return await asyncio.to_thread(_find_local_triton)


def _find_local_triton() -> str:
    """Where the Triton binary of the ``nvidia-pytriton`` wheel is: the Local target can run (ServerError if not)."""
    from cvtriton_triton.backends import find_tritonserver

    install = find_tritonserver()
    return f"tritonserver found in {install.binary.parent.parent.parent.name}/{install.binary.parent.parent.name} " \
           f"with the Python {install.stub.parent.name} backend stub — the Local target can run"
