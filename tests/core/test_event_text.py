"""The one event formatter: each event type gets its own line and tone; replaceable progress can be left out."""

from cvtriton_core.event_text import describe_event
from cvtriton_core.events import LogLine, Progress, StepFailed, StepFinished, StepStarted


def test_each_event_type_has_its_line_and_tone() -> None:
    log = describe_event(LogLine(step="serve-local", line="model loaded", source="triton", level="warning"))
    assert (log.plain, log.tone) == ("[triton] model loaded", "warning")
    assert describe_event(LogLine(step="test", line="x")).prefix == "[test] "
    assert describe_event(StepStarted(step="import", title="Import model")).plain == "==> Import model"
    done = describe_event(StepFinished(step="import", summary="3 labels", skipped=True))
    assert (done.plain, done.tone) == ("✔ import: 3 labels (already done)", "ok")
    cancelled = describe_event(StepFailed(step="train", message="Train cancelled", cancelled=True))
    failed = describe_event(StepFailed(step="train", message="bad key — fix it"))
    assert (cancelled.tone, failed.tone) == ("cancelled", "error")
    assert cancelled.plain != failed.plain.replace("bad key — fix it", "Train cancelled")


def test_replaceable_progress_only_when_asked() -> None:
    moving = Progress(step="upload", message="12/40 images", fraction=0.3, eta_s=7.2)
    kept = Progress(step="upload", message="batch 1 refused", can_replace=False)
    assert describe_event(moving).plain == "     30.0% 12/40 images (ETA 7s)"
    assert describe_event(moving, with_replaceable_progress=False) is None
    assert describe_event(kept, with_replaceable_progress=False).plain == "    batch 1 refused"


def test_layer_progress_lines() -> None:
    from cvtriton_core.events import LayerProgress

    moving = LayerProgress(step="push", layer="1ffbcf7f2e85", direction="push", status="transferring",
                           current=12_300_000, total=45_600_000)
    sent = LayerProgress(step="push", layer="1ffbcf7f2e85", direction="push", status="done", current=45_600_000,
                         total=45_600_000)
    there = LayerProgress(step="push", layer="6c1a01cc3cdc", direction="push", status="exists")
    pulled = LayerProgress(step="build", layer="6c1a01cc3cdc", direction="pull", status="done", total=2_000_000)
    assert describe_event(moving).plain == "[push] layer 1ffbcf7f2e85: transferring 12.3 MB of 45.6 MB"
    assert describe_event(moving, with_replaceable_progress=False) is None       # a pane's row shows it
    assert describe_event(sent, with_replaceable_progress=False).plain == "[push] layer 1ffbcf7f2e85: sent (45.6 MB)"
    assert describe_event(there).plain == "[push] layer 6c1a01cc3cdc: already in the registry, not sent"
    assert describe_event(pulled).plain == "[build] layer 6c1a01cc3cdc: received (2.0 MB)"
    assert LayerProgress(step="push", layer="x", direction="push", status="waiting").to_dict()["kind"] == "layer"
