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
