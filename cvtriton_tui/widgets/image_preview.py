"""An image drawn in the terminal with half-block characters: two pixel rows per text row.

The pixels are prepared off the UI thread (``cvtriton_triton.annotate.preview_pixels`` opens the annotated
PNG with PIL in a worker); this widget only paints a grid of RGB triples, so it imports no imaging library.
"""

from __future__ import annotations

from typing import Any

from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from textual.widget import Widget

Pixels = list[list[tuple[int, int, int]]]


class HalfBlocks:
    """A rich renderable: each cell is '▀' with the upper pixel as foreground, the lower as background."""

    def __init__(self, pixels: Pixels) -> None:
        self.pixels = pixels

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        rows = self.pixels
        for y in range(0, len(rows), 2):
            top = rows[y]
            bottom = rows[y + 1] if y + 1 < len(rows) else None
            for x, upper in enumerate(top):
                lower = bottom[x] if bottom is not None and x < len(bottom) else None
                style = Style(color=Color.from_rgb(*upper),
                              bgcolor=Color.from_rgb(*lower) if lower is not None else None)
                yield Segment("▀", style)
            yield Segment.line()


class ImagePreview(Widget):
    DEFAULT_CSS = """
    ImagePreview { height: auto; width: auto; min-height: 3; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pixels: Pixels = []
        self.placeholder = "no image yet"

    def show(self, pixels: Pixels) -> None:
        self.pixels = pixels
        self.refresh(layout=True)

    def clear(self, placeholder: str = "no image yet") -> None:
        self.pixels = []
        self.placeholder = placeholder
        self.refresh(layout=True)

    def get_content_width(self, container: Any, viewport: Any) -> int:
        return max((len(r) for r in self.pixels), default=len(self.placeholder))

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        return (len(self.pixels) + 1) // 2 if self.pixels else 1

    def render(self) -> Any:
        if not self.pixels:
            return self.placeholder
        return HalfBlocks(self.pixels)
