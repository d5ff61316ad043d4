"""Package & build: import the model (checked with onnxruntime), write the Triton model repository and show
the generated ``config.pbtxt`` syntax-highlighted; for the Azure target (and for Local on request) also
write the image's build context and Dockerfile (shown in a tab beside the config, with the context folder),
build the Triton image with every build output line streamed into the log, and — for Azure, when
IMAGE_REGISTRY is set — push it with one progress row per layer and the pushed digest at the end.

What is shown is always the latest run's: the config and the Dockerfile are cleared when a run starts and
stay empty when the run fails before writing them, so a failed import never leaves the previous model's
files on screen."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, RadioSet, Static, TabbedContent, TabPane

from cvtriton_core.errors import UserError
from cvtriton_core.events import Event, LayerProgress, StepFinished
from cvtriton_core.layout import sample_dir
from cvtriton_core.steps.registry import RunOptions
from cvtriton_tui.screens import freshness
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.state import core_steps_available, image_steps, no_code
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.layer_progress import LayerProgressView
from cvtriton_tui.widgets.marked_radio import MarkedRadioButton
from cvtriton_tui.widgets.progress_panel import ProgressPanel

TITLES = {"import": "Import model", "repository": "Write Triton repository", "package": "Write build context",
          "build": "Build Triton image", "push": "Push image"}
NOT_WRITTEN = "Not written yet — press Package (F5)."
NO_IMAGE = "No image is built in this plan: choose \"Also build the Triton image\" above (needs Docker)."
IMAGE_UNAVAILABLE = "The Triton image steps are not part of this build: only import and repository run here."
NO_CODE_PLAN = ("No-code deployment (DEPLOYMENT_MODE, chosen on Deploy): only the model repository is written — no "
                "image to build or push, and no image ensemble (Azure ML's Triton image cannot run its python-backend "
                "models).")
PUSH_NEEDS = ("Not pushed here: the Deploy step pushes it into the workspace's registry (the one the endpoint pulls "
              "from). To push it here too, set IMAGE_REGISTRY on the Settings step (host[:port][/namespace]).")
# What is true after a cancel, for the step that was interrupted.
AFTER_CANCEL = {
    "build": "the Docker daemon stopped the build and tagged nothing; Package (F5) builds again from the cached "
             "layers",
    "push": "the push stopped and its registry tag was removed from the local image; layers already sent stay in "
            "the registry and are not sent again",
}


class PackagePane(StepPane):
    step_id = "package"
    intro = ("Imports the model, verifies it with onnxruntime and writes the Triton model repository with an "
             "explicit config.pbtxt. For Azure in container mode (and for Local when chosen below) it then writes the Dockerfile, "
             "builds the Triton image and pushes it to IMAGE_REGISTRY.")
    DEFAULT_CSS = """
    PackagePane #package-files { width: 1fr; height: auto; }
    PackagePane #build-choice { height: auto; }
    PackagePane #dockerfile-box { width: 1fr; height: 22; border: round $panel; }
    PackagePane #image-context { height: auto; margin-bottom: 1; }
    """

    @property
    def needs_to_run(self) -> tuple[str, ...]:  # type: ignore[override]  # settings this plan's run reads
        names = ("MODEL_NAME", "MODEL_VERSION")
        if self.image_plan():
            names += ("TRITON_BASE_IMAGE",)
        if "push" in self.image_plan():
            names += ("IMAGE_REGISTRY",)
        return names

    class SampleReady(Message):
        """The generated sample export (zip) and its sample images exist on disk."""

        def __init__(self, export: Path, images: list[Path]) -> None:
            super().__init__()
            self.export = export
            self.images = images

    def compose(self) -> ComposeResult:
        yield self.heading()
        yield Static("", id="package-source")
        with RadioSet(id="build-choice"):
            yield MarkedRadioButton("Model repository only (served by the local Triton)",
                                    value=not self.state.build_image, id="build-none")
            yield MarkedRadioButton("Also build the Triton image (Docker), to test the exact image on Local test",
                                    value=self.state.build_image, id="build-image")
        yield Static("", id="image-plan")
        with Horizontal(classes="buttons"):
            yield Button("Package (F5)", id="package-run", variant="primary", classes="run-button")
            yield Button("Cancel (F8)", id="package-cancel", classes="cancel-button")
        yield ProgressPanel(id="package-progress")
        yield LayerProgressView(id="push-layers")
        with Horizontal(id="package-bottom"):
            with TabbedContent(id="package-files"):
                with TabPane("config.pbtxt", id="tab-config"):
                    with VerticalScroll(id="config-box"):
                        yield Static(Text(NOT_WRITTEN, style="dim"), id="config-text")
                with TabPane("Dockerfile", id="tab-dockerfile"):
                    with VerticalScroll(id="dockerfile-box"):
                        yield Static("", id="image-context")
                        yield Static(Text(NOT_WRITTEN, style="dim"), id="dockerfile-text")
            yield EventLog(id="package-log", title="Import, build and push log", exclude=("config.pbtxt", "Dockerfile"))

    def setup(self) -> None:
        self.query_one(ProgressPanel).plan([(n, TITLES[n]) for n in self.step_names()])
        self.entered()

    def image_plan(self) -> tuple[str, ...]:
        """The image steps this pane's run does after import and repository (none when the core lacks them)."""
        steps = image_steps(self.state)
        return steps if core_steps_available(*steps) else ()

    def step_names(self) -> list[str]:
        return ["import", "repository", *self.image_plan()]

    def entered(self) -> None:
        state = self.state
        if state.target == "local":
            source = ("the sample colour classifier" if state.model_choice == "sample"
                      else state.model_path or "(no model chosen — go back to Model)")
        else:
            source = "the export downloaded by Train & export"
        self.query_one("#package-source", Static).update(Text(f"Model: {source}"))
        self.query_one("#build-choice").display = state.target == "local"
        self.show_plan()
        panel = self.query_one(ProgressPanel)
        if not self.running and list(panel.rows) != self.step_names():   # keep a finished run's rows
            panel.plan([(n, TITLES[n]) for n in self.step_names()])

    def show_plan(self) -> None:
        """Say what a run does with the image: which steps, where the base comes from, whether it is pushed."""
        state, plan = self.state, self.image_plan()
        text = Text()
        if no_code(state):
            text.append(NO_CODE_PLAN, style="dim")
        elif image_steps(state) and not plan:
            text.append(IMAGE_UNAVAILABLE, style="yellow")
        elif plan:
            base = state.value("TRITON_BASE_IMAGE") or state.effective_settings().get("TRITON_BASE_IMAGE")
            text.append(f"Image: build context and Dockerfile FROM {base}, then docker build")
            if "push" in plan:
                text.append(f", then push to {state.value('IMAGE_REGISTRY')}")
            text.append(".")
            if state.target == "azure" and "push" not in plan:
                text.append("\n" + PUSH_NEEDS, style="yellow")
        self.query_one("#image-plan", Static).update(text)
        self.query_one("#image-plan", Static).display = bool(text)

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        if event.radio_set.id != "build-choice":
            return
        self.state.build_image = event.pressed.id == "build-image"
        self.show_plan()
        panel = self.query_one(ProgressPanel)
        if not self.running:
            panel.plan([(n, TITLES[n]) for n in self.step_names()])
        self.wizard.choices_changed()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "package-run":
            self.request_run()
        elif event.button.id == "package-cancel":
            self.wizard.action_cancel_run()

    def run_step(self) -> None:
        if self.wizard.busy():
            self.wizard.notify_busy()
            return
        self.query_one(EventLog).clear()
        self.query_one(ProgressPanel).plan([(n, TITLES[n]) for n in self.step_names()])
        self.query_one(LayerProgressView).reset()
        self.show_config(None, "Being written by this run…")
        self.show_dockerfile(None, "Being written by this run…" if self.image_plan() else NO_IMAGE)
        for key in ("build", "push"):
            self.state.results.pop(key, None)
        if self.state.target == "local" and self.state.model_choice == "sample":
            self.running = True
            self._sample_then_run()
        else:
            model = Path(self.state.model_path).expanduser() if self.state.target == "local" else None
            self._run(model)

    @work(group="prepare", exclusive=True, exit_on_error=False, description="Preparing the sample model")
    async def _sample_then_run(self) -> None:
        log = self.query_one(EventLog)
        log.note("Generating the sample colour classifier export…")
        dest = sample_dir(self.state.workdir)
        try:
            export, images = await asyncio.to_thread(_build_sample, dest)
        except OSError as exc:
            raise UserError(f"cannot write the sample into {dest} ({exc.strerror or type(exc).__name__})",
                            "pass a writable --workdir") from None
        finally:
            self.running = False
        self.state.sample_dir = dest
        self.post_message(self.SampleReady(export, images))
        self._run(export)

    def _run(self, model: Path | None) -> None:
        # No-code: Azure ML's own Triton image cannot run the image ensemble's python-backend models.
        ensemble = False if no_code(self.state) else None
        self.start_run(self.step_names(), RunOptions(model=model, ensemble=ensemble), title="Package")

    def on_package_pane_sample_ready(self, message: SampleReady) -> None:
        self.query_one(EventLog).note(f"Sample export: {message.export} ({len(message.images)} test images)")
        self.wizard.sample_images = message.images

    def handle_event(self, event: Event) -> None:
        self.query_one(EventLog).add_event(event)
        match event:
            case LayerProgress():
                self.query_one(LayerProgressView).apply(event)
                return
            case StepFinished(step="repository"):
                self.show_config(event.result.config_text)
            case StepFinished(step="package"):
                self.show_dockerfile(event.result)
            case StepFinished(step="build"):
                self.state.results["build"] = event.result
            case StepFinished(step="push"):
                self.state.results["push"] = event.result
                self.query_one(LayerProgressView).finish(event.result)
        self.query_one(ProgressPanel).apply(event)

    def show_dockerfile(self, result: Any, instead: str = NOT_WRITTEN) -> None:
        """Show the package step's Dockerfile and its context folder, or ``instead`` when there is none."""
        shown = self.query_one("#dockerfile-text", Static)
        where = self.query_one("#image-context", Static)
        if result is None:
            shown.update(Text(instead, style="dim"))
            where.update("")
            where.display = False
            return
        from rich.syntax import Syntax

        where.update(Text.assemble(("Build context ", "bold"), str(result.context_dir),
                                   (f"  (build it with any tool: docker build {result.context_dir})", "dim")))
        where.display = True
        shown.update(Syntax(result.dockerfile, "docker", theme="monokai", line_numbers=True,
                            background_color="default"))

    def show_config(self, text: str | None, instead: str = NOT_WRITTEN) -> None:
        """Show ``text`` highlighted, or ``instead`` when there is none (a run started, or failed)."""
        shown = self.query_one("#config-text", Static)
        if text is None:
            shown.update(Text(instead, style="dim"))
            return
        from rich.syntax import Syntax

        from cvtriton_tui.widgets.pbtxt import PbtxtLexer

        shown.update(Syntax(text, PbtxtLexer(), theme="monokai", line_numbers=True, background_color="default"))

    def run_finished(self, ok: bool, cancelled: bool) -> None:
        if ok:
            built = self.state.results.get("build")
            what = f"Model packaged and image {built.image_ref} built" if built is not None else "Model packaged"
            self.app.notify(f"{what}. Next: Local test (Ctrl+N).")
            return
        how = "was cancelled" if cancelled else "failed"
        config = self.query_one("#config-text", Static).content
        if not hasattr(config, "code"):           # the repository step did not get as far as writing it
            self.show_config(None, f"No config.pbtxt: the last Package run {how} — press Package (F5) again.")
        if self.image_plan() and not hasattr(self.query_one("#dockerfile-text", Static).content, "code"):
            self.show_dockerfile(None, f"No Dockerfile: the last Package run {how} — press Package (F5) again.")

    def after_cancel(self, interrupted: list[str], values: dict[str, Any]) -> str:
        for step in interrupted:
            if step in AFTER_CANCEL:
                return AFTER_CANCEL[step]
        return "nothing was left running"

    def quit_consequence(self) -> str:
        if self.image_plan():
            return ("a build or push under way is stopped (nothing half-built is tagged); the model repository "
                    "and image are made again on the next Package run")
        return "the model repository is written again on the next Package run"

    def next_problem(self) -> str | None:
        status = freshness.shown_status(self.state, "package")
        if status == freshness.OUTDATED:
            return (f"the packaged model is outdated ({freshness.why_outdated(self.state, 'package')}) — press "
                    "Package (F5) again")
        if status != "done":
            return "the model is not packaged yet — press Package (F5) first"
        return None


def _build_sample(dest: Path) -> tuple[Path, list[Path]]:
    from cvtriton_triton.sample_models import build_sample_export, sample_images

    export = build_sample_export(dest)
    return Path(export), sample_images(dest)
