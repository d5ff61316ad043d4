"""File and folder pickers: a directory tree plus an editable path, for model exports, test images and
image folders. The path typed or picked is checked before the dialog closes, so a pane never receives a
path that does not exist or has the wrong kind."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label

from cvtriton_triton.image_formats import TEST_IMAGE_SUFFIXES

IMAGE_SUFFIXES = TEST_IMAGE_SUFFIXES
MODEL_SUFFIXES = (".zip", ".onnx")


class FilteredTree(DirectoryTree):
    """Hides dot-files; shows only folders (folder mode) or folders and files with the wanted suffixes."""

    def __init__(self, path: Path, *, folders_only: bool, suffixes: tuple[str, ...], **kwargs) -> None:
        self.folders_only = folders_only
        self.suffixes = suffixes
        super().__init__(path, **kwargs)

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        for path in paths:
            if path.name.startswith("."):
                continue
            try:
                is_dir = path.is_dir()
            except OSError:
                continue
            if is_dir or (not self.folders_only and (not self.suffixes or path.suffix.lower() in self.suffixes)):
                yield path


class PathPicker(ModalScreen["Path | None"]):
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("backspace", "parent", "Parent folder", show=False)]
    AUTO_FOCUS = "#tree"

    def __init__(self, title: str, *, start: Path | None = None, folders_only: bool = False,
                 suffixes: tuple[str, ...] = (), allow_folder: bool = False) -> None:
        super().__init__(classes="modal")
        self.picker_title = title
        self.folders_only = folders_only
        self.allow_folder = allow_folder or folders_only
        self.suffixes = suffixes
        start = Path(start or Path.cwd()).expanduser()
        self.initial = start
        self.root = start if start.is_dir() else (start.parent if start.parent.is_dir() else Path.cwd())

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="picker-dialog") as dialog:
            dialog.border_title = self.picker_title
            yield FilteredTree(self.root, folders_only=self.folders_only, suffixes=self.suffixes, id="tree")
            yield Input(str(self.initial), id="picked", placeholder="path")
            yield Label("", id="picker-error", classes="field-error")
            with Horizontal(classes="buttons"):
                yield Button("Parent folder", id="parent")
                yield Button("Choose", id="choose", variant="primary")
                yield Button("Cancel", id="cancel")


    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.query_one("#picked", Input).value = str(event.path)

    def on_directory_tree_directory_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        event.stop()
        if self.allow_folder:
            self.query_one("#picked", Input).value = str(event.path)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._choose()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "choose":
            self._choose()
        elif event.button.id == "parent":
            self.action_parent()
        else:
            self.dismiss(None)

    def action_parent(self) -> None:
        tree = self.query_one("#tree", FilteredTree)
        parent = Path(tree.path).resolve().parent
        tree.path = parent

    def action_cancel(self) -> None:
        self.dismiss(None)

    def problem(self, path: Path) -> str | None:
        if not str(path).strip():
            return "type or pick a path"
        if not path.exists():
            return f"{path} does not exist"
        if path.is_dir():
            return None if self.allow_folder else f"{path} is a folder — pick a file"
        if self.folders_only:
            return f"{path} is a file — pick a folder"
        if self.suffixes and path.suffix.lower() not in self.suffixes:
            return f"{path.name} is not one of {', '.join(self.suffixes)}"
        return None

    def _choose(self) -> None:
        path = Path(self.query_one("#picked", Input).value.strip()).expanduser()
        problem = self.problem(path)
        if problem:
            self.query_one("#picker-error", Label).update(Text(problem))
            return
        self.dismiss(path)
