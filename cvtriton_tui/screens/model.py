"""Local target, step 2 — Model: the generated sample colour classifier, or your own Custom Vision export
(the zip as downloaded, a folder holding model.onnx + labels.txt, or a bare .onnx)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, RadioSet, Static

from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.pickers import MODEL_SUFFIXES, PathPicker
from cvtriton_tui.widgets.marked_radio import MarkedRadioButton


def model_path_problem(raw: str) -> str | None:
    if not raw.strip():
        return "no model chosen — type a path or press Browse"
    path = Path(raw.strip()).expanduser()
    if not path.exists():
        return f"{path} does not exist — check the path"
    if path.is_file() and path.suffix.lower() not in MODEL_SUFFIXES:
        return f"{path.name} is not a .zip export or an .onnx file — pick the export zip, its folder or model.onnx"
    if path.is_dir() and not (path / "model.onnx").exists() and not any(path.glob("*.onnx")):
        return f"{path} holds no .onnx file — pick the folder the export zip was extracted to"
    return None


class ModelPane(StepPane):
    step_id = "model"
    intro = ("Which model the local Triton serves. The sample is a small colour classifier generated here in "
             "the exact ONNX export format of Custom Vision, with a test image per colour.")

    def compose(self) -> ComposeResult:
        state = self.state
        yield self.heading()
        with RadioSet(id="model-choice"):
            yield MarkedRadioButton("Sample colour classifier (generated on this machine)",
                                    value=state.model_choice == "sample", id="choice-sample")
            yield MarkedRadioButton("My Custom Vision export (zip, folder with model.onnx + labels.txt, or .onnx)",
                                    value=state.model_choice == "path", id="choice-path")
        with Horizontal(classes="path-row"):
            yield Input(state.model_path, placeholder="path to the export", id="model-path")
            yield Button("Browse…", id="browse-model")
        yield Label("", id="model-error", classes="field-error")
        yield Static("", id="model-summary")

    def setup(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        state = self.state
        use_path = state.model_choice == "path"
        self.query_one("#model-path", Input).disabled = not use_path
        self.query_one("#browse-model", Button).disabled = not use_path
        summary = self.query_one("#model-summary", Static)
        if use_path:
            summary.update(Text("The Package step imports it, checks it with onnxruntime and writes the "
                                "Triton repository.", style="dim"))
        else:
            summary.update(Text(f"Generated into {state.workdir / 'sample'} when the Package step runs.",
                                style="dim"))
        self._show_problem(self.next_problem() if use_path and state.model_path else None)

    def _show_problem(self, problem: str | None) -> None:
        label = self.query_one("#model-error", Label)
        label.update(Text(problem or "", style="red"))
        label.display = bool(problem)

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self.state.model_choice = "path" if event.pressed.id == "choice-path" else "sample"
        self._refresh()
        self.wizard.choices_changed()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "model-path":
            self.state.model_path = event.value.strip()
            self._show_problem(model_path_problem(event.value) if event.value.strip() else None)
            self.wizard.choices_changed()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "browse-model":
            start = Path(self.state.model_path).expanduser() if self.state.model_path else Path.cwd()
            self.app.push_screen(PathPicker("Choose a Custom Vision export", start=start, suffixes=MODEL_SUFFIXES,
                                            allow_folder=True), self._picked)

    def _picked(self, path: Path | None) -> None:
        if path is not None:
            self.query_one("#model-path", Input).value = str(path)

    def next_problem(self) -> str | None:
        self.state.model_path = self.query_one("#model-path", Input).value.strip()  # what it holds now
        if self.state.model_choice == "sample":
            return None
        problem = model_path_problem(self.state.model_path)
        self._show_problem(problem)
        return problem

    def run_step(self) -> None:
        self.app.notify("Choose the model, then go on to Package (Ctrl+N) to import it.")
