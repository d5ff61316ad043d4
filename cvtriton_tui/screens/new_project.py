"""The "new project from a folder" form of the Project step: folder picker, project name, task and domain,
and a preview of what would be uploaded — tags with their image (or region) counts, and every problem the
service would refuse — before anything leaves this machine (``cvtriton_core.image_folder``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Label, Select, Static
from textual.worker import Worker

from cvtriton_core.adapters.customvision_types import CLASSIFICATION_TASKS, DETECTION_TASK, domain_type
from cvtriton_tui.screens.pickers import PathPicker

TASK_OPTIONS = [("From the folder's layout (tag sub-folders or regions.csv)", ""),
                ("Classification — one tag per image (Multiclass)", CLASSIFICATION_TASKS[0]),
                ("Classification — several tags per image (Multilabel)", CLASSIFICATION_TASKS[1]),
                ("Object detection", DETECTION_TASK)]

MAX_LISTED = 6          # problems / warnings listed; the rest are counted


class NewProjectForm(Vertical):
    DEFAULT_CSS = """
    NewProjectForm { height: auto; }
    NewProjectForm #preview-tags { height: auto; max-height: 10; border: round $panel; }
    """

    class FolderScanned(Message):
        """``plan`` is a ``cvtriton_core.image_folder.FolderPlan``."""

        def __init__(self, plan: Any) -> None:
            super().__init__()
            self.plan = plan

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan: Any = None
        self.domains: list[Any] = []

    @property
    def state(self) -> Any:
        return self.app.state  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        s = self.state
        with Horizontal(classes="form-row"):
            yield Label("Image folder", classes="row-label")
            yield Input(s.new_folder, placeholder="folder with one sub-folder per tag, or images + regions.csv",
                        id="new-folder")
            yield Button("Browse…", id="browse-folder")
        with Horizontal(classes="form-row"):
            yield Label("Project name", classes="row-label")
            yield Input(s.new_name, placeholder="VISION_PROJECT_NAME", id="new-name")
        with Horizontal(classes="form-row"):
            yield Label("Task", classes="row-label")
            yield Select(TASK_OPTIONS, value=s.new_task, allow_blank=False, id="new-task")
        with Horizontal(classes="form-row"):
            yield Label("Domain", classes="row-label")
            yield Select[str]([], prompt="General (compact) — loads with the projects", id="new-domain")
        yield Label("", id="scan-status")
        table: DataTable = DataTable(id="preview-tags", cursor_type="row")
        table.border_title = "Will upload"
        table.add_columns("tag", "count")
        yield table
        yield Static("", id="preview-problems")

    def start(self) -> None:
        """Called by the Project pane once mounted: preview the folder a previous session chose."""
        if self.state.new_folder:
            self.scan()

    # domains --------------------------------------------------------------------------------------------
    def set_domains(self, domains: list[Any]) -> None:
        self.domains = domains
        self._domain_options()

    def _domain_options(self) -> None:
        task = self.state.new_task or (self.plan.task if self.plan is not None else "")
        kind = domain_type(task)
        options = [(f"{d.name}{'' if d.exportable else ' (cannot export)'}", d.id)
                   for d in self.domains if d.type == kind]
        select = self.query_one("#new-domain", Select)
        select.set_options(options)
        ids = [o[1] for o in options]
        if self.state.new_domain in ids:
            select.value = self.state.new_domain
        else:
            compact = next((d.id for d in self.domains if d.type == kind and d.exportable
                            and d.name.startswith("General (compact)")), None)
            if compact:
                select.value = compact

    # events ---------------------------------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "new-folder":
            self.state.new_folder = event.value.strip()
            self.scan()
        elif event.input.id == "new-name":
            self.state.new_name = event.value.strip()
        else:
            return
        self.app.choices_changed()  # type: ignore[attr-defined]

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "new-task":
            self.state.new_task = event.value if isinstance(event.value, str) else ""
            self._domain_options()
            self.scan()
        elif event.select.id == "new-domain" and isinstance(event.value, str):
            self.state.new_domain = event.value
        else:
            return
        self.app.choices_changed()  # type: ignore[attr-defined]

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "browse-folder":
            event.stop()
            start = Path(self.state.new_folder).expanduser() if self.state.new_folder else Path.cwd()
            self.app.push_screen(PathPicker("Choose the image folder", start=start, folders_only=True), self._picked)

    def _picked(self, path: Path | None) -> None:
        if path is not None:
            self.query_one("#new-folder", Input).value = str(path)

    # scanning -------------------------------------------------------------------------------------------
    def scan(self) -> None:
        folder = self.state.new_folder
        if not folder:
            self.query_one("#scan-status", Label).update("")
            return
        self.query_one("#scan-status", Label).update(Text(f"Scanning {folder}…", style="dim"))
        self.plan = None      # the previous folder's preview must not let Next through for this one
        self._scan(Path(folder).expanduser(), self.state.new_task or None)

    @work(group="scan", exclusive=True, exit_on_error=False, description="Scanning the image folder")
    async def _scan(self, folder: Path, task: str | None) -> None:
        from cvtriton_core.image_folder import scan_image_folder

        plan = await asyncio.to_thread(scan_image_folder, folder, task)
        self.post_message(self.FolderScanned(plan))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.worker_state_changed(event)  # type: ignore[attr-defined]  # workers report to their node

    def on_new_project_form_folder_scanned(self, message: FolderScanned) -> None:
        message.stop()
        plan = message.plan
        if Path(plan.root) != Path(self.state.new_folder).expanduser():
            return            # a scan of what the folder field held a moment ago
        self.plan = plan
        table = self.query_one("#preview-tags", DataTable)
        table.clear()
        unit = "region" if plan.task == DETECTION_TASK else "image"
        for tag, count in sorted(plan.tags.items()):
            table.add_row(tag, f"{count} {unit}{'' if count == 1 else 's'}")
        size_mb = sum(i.size for i in plan.images) / 1e6
        self.query_one("#scan-status", Label).update(Text(
            f"{len(plan.images)} images, {len(plan.tags)} tags, {size_mb:.1f} MB · task {plan.task}"))
        text = Text()
        for mark, style, lines in (("✖", "red", plan.problems), ("!", "yellow", getattr(plan, "warnings", ()))):
            for line in lines[:MAX_LISTED]:
                text.append(f"{mark} {line}\n", style=style)
            if len(lines) > MAX_LISTED:
                text.append(f"{mark} … and {len(lines) - MAX_LISTED} more\n", style=style)
        if not plan.problems:
            text.append("✔ ready to upload", style="green")
        self.query_one("#preview-problems", Static).update(text)
        self._domain_options()

    def problem(self) -> str | None:
        if not self.state.new_folder:
            return "no image folder chosen — type a path or press Browse"
        if self.plan is None:
            return "the folder is still being scanned — wait a moment"
        if self.plan.problems:
            return self.plan.problems[0]
        name = self.query_one("#new-name", Input).value.strip()
        if not name:
            return "the new project needs a name — type it in Project name"
        return None
