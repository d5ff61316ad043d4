"""Reusable wizard widgets: event log, progress panel, latency chart, image preview, step list, results."""
