"""Per-layer progress of an image push (or a base-image pull): one row per layer, each update replacing the
layer's previous row, and at the end what was sent against the image's size and the pushed digest.

The core sends ``LayerProgress`` events (``cvtriton_core.events``) several times a second per layer; only the
latest one of each layer is kept, so the table never grows past the image's layer count.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from cvtriton_core.events import LayerProgress

STATUS_TEXT = {"waiting": ("waiting", "dim"), "transferring": ("sending", "cyan"), "extracting": ("extracting", "cyan"),
               "done": ("sent", "green"), "exists": ("already there", "green")}
BAR_WIDTH = 20


def size_text(count: int | None) -> str:
    if count is None:
        return "?"
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.1f} kB"


def _bar(current: int | None, total: int | None) -> Text:
    if current is None or not total:
        return Text(" " * BAR_WIDTH)
    filled = round(BAR_WIDTH * min(current, total) / total)
    return Text("━" * filled, style="green") + Text("─" * (BAR_WIDTH - filled), style="dim")


class LayerProgressView(Static):
    """The layers of one push or pull; ``finish`` adds the push's result (bytes sent, image size, digest)."""

    DEFAULT_CSS = """
    LayerProgressView { height: auto; max-height: 16; border: round $panel; padding: 0 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.latest: dict[str, LayerProgress] = {}     # layer id -> its latest update
        self.summary: Text | None = None
        self.display = False

    def reset(self) -> None:
        self.latest.clear()
        self.summary = None
        self.display = False
        self.update("")

    def apply(self, event: LayerProgress) -> None:
        self.latest[event.layer] = event      # supersedes the layer's earlier update
        verb = "Push" if event.direction == "push" else "Pull of the base image"
        self.border_title = f"{verb}: {len(self.latest)} layers"
        self._render_table()

    def finish(self, result: Any) -> None:
        """The push's ``PushResult``: bytes sent vs the image size, the layers the registry already had, the digest."""
        share = f" ({result.bytes_sent / result.image_size:.1%})" if result.image_size else ""
        kept = result.layers_total - result.layers_sent
        text = Text()
        text.append(f"Sent {size_text(result.bytes_sent)} of the {size_text(result.image_size)} image{share}: "
                    f"{result.layers_sent} of {result.layers_total} layers")
        if kept > 0:
            text.append(f", {kept} already in the registry")
        text.append("\nDigest ", style="bold")
        text.append(result.digest)
        text.append("\nDeploy ", style="bold")
        text.append(result.reference)
        self.summary = text
        self._render_table()

    def _render_table(self) -> None:
        table = Table.grid(padding=(0, 1))
        table.add_column("layer", no_wrap=True)
        table.add_column("status", no_wrap=True, width=13)
        table.add_column("bar", no_wrap=True)
        table.add_column("bytes", no_wrap=True)
        for layer, update in self.latest.items():
            label, style = STATUS_TEXT.get(update.status, (update.status, ""))
            if update.status == "done" and update.direction == "pull":
                label = "received"
            amount = "" if update.current is None else size_text(update.current)
            if update.total:
                amount += (" of " if amount else "") + size_text(update.total)
            table.add_row(Text(layer, style="dim"), Text(label, style=style), _bar(update.current, update.total),
                          amount)
        if self.summary is not None:
            grid = Table.grid()
            grid.add_row(table)
            grid.add_row(self.summary)
            self.update(grid)
        else:
            self.update(table)
        self.display = True
