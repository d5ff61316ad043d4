"""An Input that is compact from the start.

Textual's widgets take ``compact=True`` by setting a reactive whose default is False: the first assignment
removes and re-adds the ``-textual-compact`` class, and each class change restyles the widget right away —
before it is mounted, and again when it is. With 19 settings inputs on the first screen that was a good
part of the wizard's start-up; here the default is compact, so nothing changes and nothing is restyled.
"""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Input

COMPACT = "-textual-compact"


class CompactInput(Input):
    compact = reactive(True, toggle_class=COMPACT)

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - Input's own signature
        kwargs["compact"] = True
        kwargs["classes"] = f"{kwargs.get('classes') or ''} {COMPACT}".strip()
        super().__init__(*args, **kwargs)
