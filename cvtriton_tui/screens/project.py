"""Azure target — Project & iteration: the training resource's projects in a filterable table (name, task,
domain, exportable), the chosen project's iterations (status, published, precision/recall), or a new
project from an image folder. Listing runs in workers through the Custom Vision adapter."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Input, RadioSet, Static

from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.new_project import NewProjectForm
from cvtriton_tui.screens.state import customvision_available
from cvtriton_tui.widgets.marked_radio import MarkedRadioButton

UNAVAILABLE = ("Custom Vision adapter not available in this build yet: projects cannot be listed or created. "
               "The Local target works without it.")
NEW_ITERATION = "__new__"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _date(value: Any) -> str:
    return value.strftime("%Y-%m-%d") if value is not None else "—"


def matches(project: Any, text: str) -> bool:
    text = text.strip().lower()
    return not text or any(text in field.lower() for field in (project.name, project.task, project.domain_name))


class ProjectPane(StepPane):
    step_id = "project"
    intro = "Pick a project and an iteration to export, or create a new project from a folder of images."
    needs_to_enter = ("VISION_TRAINING_ENDPOINT", "VISION_TRAINING_KEY")   # it lists the projects at once

    class ProjectsLoaded(Message):
        def __init__(self, projects: list[Any], domains: list[Any]) -> None:
            super().__init__()
            self.projects = projects
            self.domains = domains

    class IterationsLoaded(Message):
        def __init__(self, project_id: str, iterations: list[Any]) -> None:
            super().__init__()
            self.project_id = project_id
            self.iterations = iterations

    def __init__(self) -> None:
        super().__init__()
        self.projects: list[Any] = []
        self.iterations: list[Any] = []
        self.loaded = False

    def compose(self) -> ComposeResult:
        s = self.state
        yield self.heading()
        yield Static(Text(UNAVAILABLE, style="yellow"), id="cv-note", classes="unavailable")
        with RadioSet(id="project-mode"):
            yield MarkedRadioButton("Use an existing project", value=not s.new_project, id="mode-existing")
            yield MarkedRadioButton("New project from an image folder", value=s.new_project, id="mode-new")
        with Vertical(id="existing-box"):
            with Horizontal(classes="form-row"):
                yield Input(s.project_filter, placeholder="filter by name, task or domain", id="project-filter")
                yield Button("Refresh", id="refresh-projects")
            projects: DataTable = DataTable(id="projects", cursor_type="row", zebra_stripes=True)
            projects.border_title = "Projects"
            projects.add_columns("name", "task", "domain", "exportable", "created")
            yield projects
            iterations: DataTable = DataTable(id="iterations", cursor_type="row", zebra_stripes=True)
            iterations.border_title = "Iterations"
            iterations.add_columns("iteration", "status", "published", "precision", "recall", "mAP", "trained")
            yield iterations
        yield NewProjectForm(id="new-box")
        yield Static("", id="project-choice")

    def setup(self) -> None:
        self.query_one(NewProjectForm).start()
        available = customvision_available()
        self.query_one("#cv-note").display = not available
        self._mode()

    def entered(self) -> None:
        if customvision_available() and not self.loaded:
            self.load_projects()

    def _mode(self) -> None:
        self.query_one("#existing-box").display = not self.state.new_project
        self.query_one("#new-box").display = self.state.new_project
        self._summary()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        if event.radio_set.id == "project-mode":
            self.state.new_project = event.pressed.id == "mode-new"
            self._mode()
            self.wizard.choices_changed()

    # listing ----------------------------------------------------------------------------------------------
    def load_projects(self) -> None:
        self.query_one("#projects", DataTable).loading = True
        self.wizard.flush_edits()
        self._load_projects()

    @work(group="cv-projects", exclusive=True, exit_on_error=False, description="Listing Custom Vision projects")
    async def _load_projects(self) -> None:
        from cvtriton_core.adapters.customvision import CustomVisionService

        try:
            async with CustomVisionService.from_settings(self.state.effective_settings()) as service:
                domains = await service.list_domains()
                projects = await service.list_projects()
        finally:    # a failure opens the error modal (the app's worker handler); the table must not spin on
            self.query_one("#projects", DataTable).loading = False
        self.post_message(self.ProjectsLoaded(projects, domains))

    def on_project_pane_projects_loaded(self, message: ProjectsLoaded) -> None:
        self.loaded = True
        self.projects = message.projects
        if self.state.project is None:      # start on the project the settings name (by id, else by name)
            settings = self.state.effective_settings()
            wanted_id, wanted_name = settings.raw("VISION_PROJECT_ID"), settings.raw("VISION_PROJECT_NAME")
            self.state.project = (next((p for p in self.projects if wanted_id and p.id == wanted_id), None)
                                  or next((p for p in self.projects if wanted_name and p.name == wanted_name), None))
            if self.state.project is not None:
                self.load_iterations(self.state.project)
        self.query_one(NewProjectForm).set_domains(message.domains)
        self.query_one("#projects", DataTable).loading = False
        self._fill_projects()

    def _fill_projects(self) -> None:
        table = self.query_one("#projects", DataTable)
        table.clear()
        shown = [p for p in self.projects if matches(p, self.state.project_filter)]
        for p in shown:
            table.add_row(p.name, p.task, p.domain_name, "yes" if p.exportable else Text("no", style="red"),
                          _date(p.created), key=p.id)
        table.border_title = f"Projects ({len(shown)} of {len(self.projects)})"
        chosen = self.state.project
        if chosen is not None and any(p.id == chosen.id for p in shown):
            table.move_cursor(row=table.get_row_index(chosen.id))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "project-filter":
            self.state.project_filter = event.value
            self._fill_projects()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "refresh-projects":
            self.load_projects()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value if event.row_key is not None else None
        if event.data_table.id == "projects":
            project = next((p for p in self.projects if p.id == key), None)
            if project is not None and (self.state.project is None or self.state.project.id != project.id):
                self.state.project = project
                self.state.iteration = None
                self.load_iterations(project)
                self.wizard.choices_changed()
            self._summary()
        elif event.data_table.id == "iterations":
            iteration = next((i for i in self.iterations if i.id == key), None)
            if iteration != self.state.iteration:
                self.state.iteration = iteration
                self.wizard.choices_changed()
            self._summary()

    def load_iterations(self, project: Any) -> None:
        table = self.query_one("#iterations", DataTable)
        table.border_title = f"Iterations of {project.name}"
        table.loading = True
        self._load_iterations(project.id)

    @work(group="cv-iterations", exclusive=True, exit_on_error=False, description="Listing iterations")
    async def _load_iterations(self, project_id: str) -> None:
        from cvtriton_core.adapters.customvision import CustomVisionService

        try:
            async with CustomVisionService.from_settings(self.state.effective_settings()) as service:
                iterations = await service.list_iterations(project_id)
        finally:    # a failure opens the error modal; the table must not spin on
            self.query_one("#iterations", DataTable).loading = False
        self.post_message(self.IterationsLoaded(project_id, iterations))

    def on_project_pane_iterations_loaded(self, message: IterationsLoaded) -> None:
        table = self.query_one("#iterations", DataTable)
        table.loading = False
        if self.state.project is None or message.project_id != self.state.project.id:
            return
        self.iterations = message.iterations
        table.border_title = f"Iterations of {self.state.project.name}"   # the title names what is listed
        table.clear()
        table.add_row(Text("(train a new iteration)", style="italic"), "", "", "", "", "", "", key=NEW_ITERATION)
        for it in self.iterations:
            table.add_row(it.name, it.status, it.published_name or "—", _pct(it.precision), _pct(it.recall),
                          _pct(it.average_precision), _date(it.trained_at), key=it.id)
        wanted = self.state.effective_settings().raw("VISION_ITERATION_ID")
        completed = [it for it in self.iterations if it.status == "Completed"]
        chosen = next((it for it in self.iterations if it.id == wanted), None) or (completed[-1] if completed else None)
        if chosen is not None:
            table.move_cursor(row=table.get_row_index(chosen.id))

    # choice -----------------------------------------------------------------------------------------------
    def _summary(self) -> None:
        s = self.state
        if s.new_project:
            text = Text("New project: upload the folder, train, publish and export.")
        elif s.project is None:
            text = Text("No project chosen.", style="dim")
        else:
            it = s.iteration
            text = Text(f"Project {s.project.name} · ")
            text.append(f"iteration {it.name} ({it.status})" if it is not None else "train a new iteration")
        self.query_one("#project-choice", Static).update(text)

    def next_problem(self) -> str | None:
        s = self.state
        if not customvision_available():
            return "the Custom Vision adapter is not available yet — use the Local target"
        if s.new_project:
            return self.query_one(NewProjectForm).problem()
        if s.project is None:
            return "no project chosen — pick one in the table, or choose New project"
        if not s.project.exportable:
            return (f"project {s.project.name} uses domain {s.project.domain_name}, which cannot export ONNX — "
                    "pick a project with a compact domain or create a new one")
        if s.iteration is not None and s.iteration.status not in ("Completed",):
            return f"iteration {s.iteration.name} is {s.iteration.status} — pick a completed iteration or a new one"
        return None
