"""Training, publishing and export for :class:`~cvtriton_core.adapters.customvision.CustomVisionService`.

A mixin so the service stays one object while each module stays readable. Every operation that creates
something on the service is written to be run again safely: training reuses an iteration that is already
training (the service trains one at a time) or up to date; publishing does nothing when the iteration already
carries the name; an export of the same platform and flavor is reused, never requested twice.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from cvtriton_core.adapters import export_download
from cvtriton_core.adapters.customvision_types import (ONNX_FLAVORS, ExportInfo, IterationInfo, ServiceRefusal,
                                                       export_info, iteration_info)
from cvtriton_core.adapters.retry import CallFailed, call_with_retry
from cvtriton_core.errors import SettingsError, StepFailed, UserError

if TYPE_CHECKING:
    from cvtriton_core.adapters.customvision import CustomVisionService

IN_PROGRESS_HINT = "run the same command again later: it resumes waiting instead of starting over"


class TrainingOps:
    async def train(self: "CustomVisionService", project_id: str) -> tuple[IterationInfo, bool]:
        """Start training; returns (iteration, started). When the service says nothing changed since the last
        training, or a training is already running, that iteration is returned with ``started=False``."""

        before = {i.id for i in await self.list_iterations(project_id, with_performance=False)}

        async def running() -> IterationInfo | None:
            its = await self.list_iterations(project_id, with_performance=False)
            return next((i for i in its if i.status not in ("Completed", "Failed")), None)

        async def started_by_us() -> IterationInfo | None:     # a lost response: the new iteration is ours
            its = await self.list_iterations(project_id, with_performance=False)
            return next((i for i in its if i.id not in before), None)

        try:
            it = await self._call("start training", lambda: iteration_info(self._client().train_project(project_id)),
                                  safe=False, reconcile=started_by_us)
            return it, True
        except ServiceRefusal as refusal:
            code = refusal.code or ""
            if code == "BadRequestTrainingAlreadyInProgress":
                current = await running()
                if current is not None:
                    return current, False
            if code.startswith("BadRequestTrainingNotNeeded"):     # also ...ButTrainingPipelineUpdated
                done = [i for i in await self.list_iterations(project_id, with_performance=False)
                        if i.status == "Completed"]
                if done:
                    return done[0], False
            if code.endswith("TrainingValidationFailed") or code == "BadRequestTrainingValidationFailed":
                raise UserError(f"Custom Vision will not train this project yet: {refusal.service_message}",
                                "add images until every tag has at least 5 (classification) or 15 regions "
                                "(object detection), then run again") from None
            if code == "BadRequestExceedIterationPerProjectLimit":
                raise UserError(f"the project already has the most iterations allowed ({refusal.service_message})",
                                "delete an old, unpublished iteration in the Custom Vision portal, then run "
                                "again") from None
            raise

    async def wait_training(self: "CustomVisionService", project_id: str, iteration_id: str, *,
                            on_poll: Callable[[IterationInfo, float], None] | None = None,
                            timeout_s: float = 4 * 3600) -> IterationInfo:
        """Poll until the iteration is Completed (returned with its scores) or Failed (StepFailed with the
        service's reason)."""
        start, delay = time.monotonic(), self.poll_initial_s
        while True:
            it = await self.get_iteration(project_id, iteration_id)
            elapsed = time.monotonic() - start
            if it.status == "Completed":
                return await self.get_iteration(project_id, iteration_id, with_performance=True)
            if it.status == "Failed":
                raise StepFailed(f"training of {it.name} failed: {it.training_error or 'the service gave no reason'}",
                                 "fix what it names (often: too few or unreadable images for a tag), then run the "
                                 "train step again")
            if elapsed > timeout_s:
                raise StepFailed(f"training of {it.name} is still running after {elapsed / 60:.0f} min",
                                 IN_PROGRESS_HINT)
            if on_poll:
                on_poll(it, elapsed)
            await asyncio.sleep(delay)
            delay = min(delay * 1.6, self.poll_max_s)

    async def publish(self: "CustomVisionService", project_id: str, iteration_id: str, publish_name: str,
                      prediction_resource_id: str | None) -> bool:
        """Publish the iteration under ``publish_name``; False when it already was. When another iteration
        holds the name, the name moves to this one (``overwrite``), as re-publishing in the portal does."""
        if not prediction_resource_id:
            raise SettingsError("VISION_PREDICTION_RESOURCE_ID is not set (publishing needs the prediction "
                                "resource's ID)", "copy it from the prediction resource's Properties page in the "
                                "Azure portal into .env")
        iterations = await self.list_iterations(project_id, with_performance=False)
        it = next((i for i in iterations if i.id == iteration_id), None)
        if it is None:
            it = await self.get_iteration(project_id, iteration_id)
        if it.published_name == publish_name:
            return False
        if it.published_name:
            raise UserError(f"{it.name} is already published as {it.published_name!r}",
                            f"set VISION_PUBLISH_ITERATION_NAME={it.published_name}, or unpublish it in the Custom "
                            "Vision portal first")
        holder = next((i for i in iterations if i.published_name == publish_name and i.id != iteration_id), None)
        if holder is not None:
            self.notify(f"the name {publish_name!r} moves from {holder.name} to {it.name}")

        async def published() -> bool | None:
            return True if (await self.get_iteration(project_id, iteration_id)).published_name == publish_name else None

        try:
            await self._call(f"publish {it.name} as {publish_name!r}", lambda: self._client().publish_iteration(
                project_id, iteration_id, publish_name, prediction_resource_id, overwrite=True if holder else None),
                safe=False, reconcile=published)
        except ServiceRefusal as refusal:
            if refusal.code == "BadRequestInvalidPublishTarget":
                raise UserError("Custom Vision cannot publish to the resource VISION_PREDICTION_RESOURCE_ID names "
                                f"({refusal.service_message})",
                                "set VISION_PREDICTION_RESOURCE_ID to the Resource ID of a Custom Vision prediction "
                                "resource (Properties page in the Azure portal)") from None
            if refusal.code == "BadRequestInvalidPublishName":
                raise UserError(f"Custom Vision refused the publish name {publish_name!r} "
                                f"({refusal.service_message})", "set VISION_PUBLISH_ITERATION_NAME to letters, "
                                "digits, '-', '_' or '.'") from None
            raise
        return True

    async def get_exports(self: "CustomVisionService", project_id: str, iteration_id: str) -> list[ExportInfo]:
        raw = await self._call("list exports", lambda: self._client().get_exports(project_id, iteration_id))
        return [export_info(e) for e in raw]

    async def request_export(self: "CustomVisionService", project_id: str, iteration_id: str, flavor: str | None,
                             *, platform: str = "ONNX") -> tuple[ExportInfo, bool]:
        """An export of ``platform``/``flavor``: the existing one when there is one (Exporting or Done), else a
        new request. Returns (export, requested_now)."""
        if flavor is not None and flavor not in ONNX_FLAVORS:
            raise UserError(f"VISION_EXPORT_FLAVOR={flavor} is not an ONNX export flavor Custom Vision documents",
                            "set it to one of " + ", ".join(ONNX_FLAVORS) + " (or leave it empty for the default)")

        async def existing() -> ExportInfo | None:
            return next((e for e in await self.get_exports(project_id, iteration_id)
                         if e.matches(platform, flavor) and e.status in ("Exporting", "Done")), None)

        found = await existing()
        if found is not None:
            return found, False
        try:
            created = await self._call(f"export as {platform} {flavor or ''}".strip(), lambda: export_info(
                self._client().export_iteration(project_id, iteration_id, platform, flavor)),
                safe=False, reconcile=existing)
            return created, True
        except ServiceRefusal as refusal:
            if refusal.code == "BadRequestExportAlreadyInProgress":
                again = await existing()
                if again is not None:
                    return again, False
            if refusal.code in ("BadRequestNotSupported", "BadRequestExportValidationFailed"):
                raise UserError(f"Custom Vision cannot export this iteration as {platform} {flavor or ''}: "
                                f"{refusal.service_message}", "use a project on a compact domain (e.g. General "
                                "(compact)) and a documented flavor; retrain after changing the domain") from None
            raise

    async def wait_export(self: "CustomVisionService", project_id: str, iteration_id: str, flavor: str | None, *,
                          platform: str = "ONNX", on_poll: Callable[[ExportInfo, float], None] | None = None,
                          timeout_s: float = 3600) -> ExportInfo:
        """Poll until the export is Done with a download URI (StepFailed when it failed or took too long)."""
        start, delay = time.monotonic(), self.poll_initial_s
        while True:
            match = next((e for e in await self.get_exports(project_id, iteration_id) if e.matches(platform, flavor)),
                         None)
            elapsed = time.monotonic() - start
            if match is None:
                raise StepFailed("the export request is gone from the iteration's exports", "run the export step again")
            if match.status == "Done" and match.download_uri:
                return match
            if match.status == "Failed":
                raise StepFailed(f"Custom Vision failed to export the iteration as {platform} {flavor or ''}".strip(),
                                 "run the export step again; it requests a new export")
            if elapsed > timeout_s:
                raise StepFailed(f"the export is still running after {elapsed / 60:.0f} min", IN_PROGRESS_HINT)
            if on_poll:
                on_poll(match, elapsed)
            await asyncio.sleep(delay)
            delay = min(delay * 1.6, self.poll_max_s)

    async def download_export(self: "CustomVisionService", uri: str, dest: Path, *,
                              on_progress: Callable[[int, int | None], None] | None = None) -> Path:
        """Download the zip, retrying dropped connections and 5xx. A refused link (pre-signed links expire)
        raises :class:`DownloadRefused` so the caller can fetch a fresh one."""
        from cvtriton_core.adapters.customvision import classify

        host = export_download.uri_host(uri)
        try:
            return await call_with_retry(lambda: export_download.download_file(uri, dest, on_progress=on_progress),
                                         what=f"download the export from {host}", classify=classify,
                                         policy=self.policy, notify=self.notify, safe_to_repeat=True)
        except CallFailed as err:
            if err.failure.status in (401, 403, 404):
                raise DownloadRefused(f"the export link on {host} was refused (HTTP {err.failure.status}); "
                                      "download links expire", "run the export step again: it asks for a fresh link"
                                      ) from None
            raise StepFailed(f"could not download the export from {host} ({err.failure.describe()})",
                             "check the network and run the export step again") from None


class DownloadRefused(StepFailed):
    """The pre-signed download link was refused (expired or revoked)."""
