"""Reusable wizard widgets: event log, progress panel, latency chart, image preview, step list, results.

The names below are this package's face, loaded on first use (PEP 562) so a screen pays only for the
widgets it shows.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "EventLog": "event_log", "ProgressPanel": "progress_panel", "StepRow": "progress_panel",
    "LatencyChart": "latency_chart", "ImagePreview": "image_preview", "StepList": "step_list",
    "ResultsView": "results_view", "SettingField": "setting_field", "Timeline": "timeline",
    "MarkedRadioButton": "marked_radio", "PbtxtLexer": "pbtxt",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
