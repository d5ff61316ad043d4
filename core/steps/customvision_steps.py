"""Pipeline steps for Custom Vision: ``project``, ``upload``, ``train``, ``publish``, ``export``.

Each step reads what earlier steps left in the run state, does its part through
:class:`~cvtriton_core.adapters.customvision.CustomVisionService`, and records what it did, so running the
same command again (after an interruption or a success) repeats no work: the project is found, not created
again; uploaded images are skipped; an iteration that is training is waited for, one that is up to date is
reused; an export of the same flavor is downloaded, not requested again. The project and iteration IDs are
written back into the ``.env`` file (atomically, keeping ``.env.bak``).
"""

from __future__ import annotations

import time
from pathlib import Path

from cvtriton_core.adapters.customvision import CustomVisionService, IterationInfo
from cvtriton_core.adapters.customvision_ops import DownloadRefused
from cvtriton_core.adapters.customvision_types import IterationNotFound, domain_type
from cvtriton_core.adapters.export_download import remove_partial_downloads, safe_extract, verify_export_zip
from cvtriton_core.errors import SettingsError, UserError
from cvtriton_core.pipeline import StepContext
from cvtriton_core.settings import Settings
from cvtriton_core.steps import customvision_upload as up
from cvtriton_core.steps.customvision_common import (DownloadProgress, ExportResult, ProjectResult, PublishResult,
                                                     TrainResult, UploadResult, chosen_iteration, chosen_project_id,
                                                     export_flavor, save_ids, scan_folder, service_for)

__all__ = ["ChooseProject", "UploadImages", "TrainIteration", "PublishIteration", "ExportIteration",
           "ProjectResult", "UploadResult", "TrainResult", "PublishResult", "ExportResult"]


def _check_folder(images: Path | None) -> None:
    if images is not None and not Path(images).is_dir():
        what = "is not a folder" if Path(images).exists() else "does not exist"
        raise UserError(f"--images {images} {what}", "pass a folder of images (one sub-folder per tag, or "
                        "images with regions.csv)")


class ChooseProject:
    name = "project"
    title = "Custom Vision project"
    locks_env_file = True     # finds or creates the project the settings name, writes its ID back

    def __init__(self, images: Path | None = None, domain: str | None = None) -> None:
        self.images, self.domain = images, domain

    def check(self, settings: Settings) -> None:
        for name in ("VISION_PROJECT_ID", "VISION_PROJECT_NAME", "VISION_PROJECT_TASK"):
            if settings.get(name):
                settings.require(name)
        _check_folder(self.images)

    async def run(self, ctx: StepContext) -> ProjectResult:
        s = ctx.settings
        self.check(s)
        async with service_for(ctx) as cv:
            ctx.progress(f"Connecting to {cv.endpoint}")
            project, created = None, False
            if s.get("VISION_PROJECT_ID"):
                project = await cv.get_project(s.get("VISION_PROJECT_ID"))
                if s.get("VISION_PROJECT_NAME") and project.name != s.get("VISION_PROJECT_NAME"):
                    ctx.log(f"VISION_PROJECT_ID names the project {project.name!r}, not VISION_PROJECT_NAME="
                            f"{s.get('VISION_PROJECT_NAME')!r}; using the ID", level="warning")
            else:
                name = s.get("VISION_PROJECT_NAME")
                if not name:
                    raise SettingsError("neither VISION_PROJECT_ID nor VISION_PROJECT_NAME is set",
                                        "set VISION_PROJECT_NAME to the project to use or create")
                found = await cv.find_projects(name)
                if len(found) > 1:
                    raise UserError(f"{len(found)} Custom Vision projects are named {name!r}",
                                    "set VISION_PROJECT_ID to the one to use: " + ", ".join(p.id for p in found))
                project = found[0] if found else None
                if project is None:
                    project, created = await self._create(ctx, cv, name), True
            if not project.exportable:
                raise UserError(f"project {project.name!r} uses the domain {project.domain_name!r}, which cannot "
                                "export models, and this project is meant to be deployed",
                                "choose a project on a compact domain, or switch this one to e.g. 'General "
                                "(compact)' in the portal's project settings and train again")
        if ctx.state.get("project_id") not in (None, project.id):
            ctx.log("the project changed since the last run: earlier iteration and export are forgotten")
            ctx.state.set(iteration_id=None, training_iteration=None, training_for=None, trained_for=None,
                          upload_digest=None, export_iteration=None)
        ctx.state.set(project_id=project.id, project_name=project.name, project_task=project.task)
        save_ids(ctx, VISION_PROJECT_ID=project.id, **({"VISION_ITERATION_ID": ""} if created else {}))
        verb = "created" if created else "using"
        return ProjectResult(summary=f"{verb} {project.name!r} ({project.task}, {project.domain_name})",
                             project_id=project.id, name=project.name, task=project.task,
                             domain_name=project.domain_name, created=created)

    async def _create(self, ctx: StepContext, cv: CustomVisionService, name: str):
        task = ctx.settings.get("VISION_PROJECT_TASK") or None
        if self.images is not None:
            # a bad folder fails here, before anything exists on the service
            task = (await ctx.blocking(scan_folder, ctx, self.images, task)).task
        elif task is None:
            raise UserError(f"there is no project named {name!r} and no image folder to create it from",
                            "pass --images DIR (one sub-folder per tag, or images with regions.csv), or set "
                            "VISION_PROJECT_TASK")
        domain_key = self.domain or ctx.settings.get("VISION_PROJECT_DOMAIN")
        domain_id = None
        if domain_key:
            domain = await cv.find_domain(domain_key, domain_type(task))
            if domain is None:
                names = sorted({d.name for d in await cv.list_domains()
                                if d.type == domain_type(task) and d.exportable})
                raise UserError(f"{domain_key!r} is not a {domain_type(task)} domain of this resource",
                                "choose one of " + ", ".join(names))
            if not domain.exportable:
                raise UserError(f"the domain {domain.name!r} cannot export models, and this project is meant to be "
                                "deployed", "choose a compact domain, e.g. 'General (compact)'")
            domain_id = domain.id
        ctx.progress(f"Creating project {name!r} ({task})")
        return await cv.create_project(name, task, domain_id)


class UploadImages:
    name = "upload"
    title = "Upload images"
    locks_env_file = True

    def __init__(self, images: Path | None) -> None:
        self.images = images

    def check(self, settings: Settings) -> None:
        _check_folder(self.images)

    async def run(self, ctx: StepContext) -> UploadResult:
        project_id = chosen_project_id(ctx)
        if self.images is None:
            if ctx.state.get("upload_digest"):
                return UploadResult("no --images given: keeping the images uploaded earlier", 0, 0, 0, 0, {}, True)
            raise UserError("the upload step needs an image folder", "pass --images DIR")
        plan = await ctx.blocking(scan_folder, ctx, self.images, ctx.state.get("project_task"))
        if domain_type(plan.task) != domain_type(ctx.state.get("project_task") or plan.task):
            raise UserError(f"the folder is laid out for {plan.task} but the project is "
                            f"{ctx.state.get('project_task')}", "use a matching folder or another project")
        manifest = up.UploadManifest.for_project(ctx.workdir, project_id)
        pending = [i for i in plan.images if i.digest not in manifest]
        digest = up.dataset_digest(plan)
        if not pending:
            ctx.state.set(upload_digest=digest)
            return UploadResult(f"all {len(plan.images)} images were uploaded before", 0, 0, len(plan.images), 0,
                                plan.tags, skipped=True)
        async with service_for(ctx) as cv:
            ctx.progress(f"Creating tags ({len(plan.tags)})")
            tag_ids = await cv.ensure_tags(project_id, list(plan.tags))
            tally = await self._send(ctx, cv, project_id, pending, tag_ids, manifest)
        if tally.refused:
            raise up.refused_error(tally.refused, len(pending))
        ctx.state.set(upload_digest=digest)
        already = len(plan.images) - len(pending)
        return UploadResult(f"{tally.uploaded} new images in {tally.batches} batches ({tally.duplicates} were already "
                            f"in the project, {already} skipped as uploaded before) to {len(plan.tags)} tags",
                            tally.uploaded, tally.duplicates, already, tally.batches, plan.tags)

    async def _send(self, ctx, cv, project_id, pending, tag_ids, manifest) -> up.UploadTally:
        batches = up.batches_for(pending)
        uploaded = duplicates = done = 0
        refused: list[str] = []
        for number, batch in enumerate(batches, 1):
            built = [await ctx.blocking(up.build_item, image, tag_ids) for image in batch]
            outcomes = await cv.upload_batch(project_id, [item for item, _ in built])
            statuses: dict[str, int] = {}
            for (item, sent_digest), outcome in zip(built, outcomes):
                statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
                if outcome.uploaded:
                    manifest.add(sent_digest, outcome.image_id)
                else:
                    refused.append(f"{item.name}: {outcome.status}")
                    ctx.log(f"{item.name}: {outcome.status} ({up.STATUS_HELP.get(outcome.status, 'refused')})",
                            source="customvision", level="warning")
            await ctx.blocking(manifest.save)
            uploaded += statuses.get("OK", 0)
            duplicates += statuses.get("OKDuplicate", 0)
            done += len(batch)
            counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
            ctx.progress(f"batch {number}/{len(batches)}: {done}/{len(pending)} images sent ({counts})", done=done,
                         total=len(pending))
        return up.UploadTally(uploaded, duplicates, len(batches), tuple(refused))


class TrainIteration:
    name = "train"
    title = "Train"
    locks_env_file = True     # writes VISION_ITERATION_ID back

    async def run(self, ctx: StepContext) -> TrainResult:
        project_id = chosen_project_id(ctx)
        wanted = ctx.state.get("upload_digest")
        async with service_for(ctx) as cv:
            pending = ctx.state.get("training_iteration")
            trained = True
            if not pending and ctx.state.get("iteration_id") and wanted and ctx.state.get("trained_for") == wanted:
                it = await self._still_there(ctx, cv, project_id, ctx.state.get("iteration_id"), with_performance=True)
                if it is not None and it.status == "Completed":
                    return self._result(ctx, it, trained=False, skipped=True)
            earlier = await self._still_there(ctx, cv, project_id, pending) if pending else None
            if earlier is not None and earlier.status == "Failed":
                ctx.log(f"the earlier training ({earlier.name}) failed: {earlier.training_error or 'no reason given'}; "
                        "training again", level="warning")
            if earlier is not None and earlier.status != "Failed":
                ctx.log(f"resuming: waiting for the training started earlier ({pending})")
                iteration_id = pending
                # started for other images than the folder now holds: ask again once it is done
                stale = ctx.state.get("training_for") != wanted
                pending_before = True
            else:
                ctx.progress("Asking Custom Vision to train")
                started, trained = await cv.train(project_id)
                iteration_id = started.id
                ctx.state.set(training_iteration=iteration_id, training_for=wanted if trained else None)
                stale = not trained and started.status != "Completed"    # someone else's training, maybe older
                pending_before = False
                if not trained:
                    ctx.log(f"{started.name} is {'up to date' if started.status == 'Completed' else 'already training'}"
                            "; no new training started")
            start = time.monotonic()

            def on_poll(i: IterationInfo, waited: float) -> None:
                ctx.progress(f"{i.name}: {i.status} ({waited:.0f} s)")

            it = await cv.wait_training(project_id, iteration_id, on_poll=on_poll)
            if stale:
                ctx.log(f"{it.name} may predate the latest upload; asking whether the new images need training")
                again, trained_again = await cv.train(project_id)
                if again.id != it.id:
                    ctx.state.set(training_iteration=again.id, training_for=wanted if trained_again else None)
                    it = await cv.wait_training(project_id, again.id, on_poll=on_poll)
                    trained = trained or trained_again
        ctx.state.set(training_iteration=None, training_for=None, iteration_id=it.id, trained_for=wanted)
        ctx.log(f"{it.name} trained in {time.monotonic() - start:.0f} s" if trained else f"{it.name} is ready")
        return self._result(ctx, it, trained=trained, skipped=not trained and not pending_before)

    @staticmethod
    async def _still_there(ctx: StepContext, cv: CustomVisionService, project_id: str, iteration_id: str,
                           **kwargs: bool) -> IterationInfo | None:
        """The iteration an earlier run recorded, or None (logged) when it was deleted since, e.g. in the portal."""
        try:
            return await cv.get_iteration(project_id, iteration_id, **kwargs)
        except IterationNotFound:
            ctx.log(f"the iteration {iteration_id} recorded by an earlier run no longer exists; training again",
                    level="warning")
            ctx.state.set(iteration_id=None, trained_for=None, training_iteration=None, training_for=None)
            return None

    @staticmethod
    def _result(ctx: StepContext, it: IterationInfo, *, trained: bool, skipped: bool) -> TrainResult:
        save_ids(ctx, VISION_ITERATION_ID=it.id)
        scores = ", ".join(f"{k} {v:.1%}" for k, v in (("precision", it.precision), ("recall", it.recall),
                                                       ("mAP", it.average_precision)) if v is not None)
        verb = "trained" if trained else "up to date"
        return TrainResult(f"{it.name} {verb}" + (f": {scores}" if scores else ""), it.id, it.name, trained,
                           it.precision, it.recall, it.average_precision, skipped=skipped)


class PublishIteration:
    name = "publish"
    title = "Publish iteration"
    locks_env_file = True

    def check(self, settings: Settings) -> None:
        settings.require("VISION_PUBLISH_ITERATION_NAME", "VISION_PREDICTION_RESOURCE_ID")

    async def run(self, ctx: StepContext) -> PublishResult:
        project_id = chosen_project_id(ctx)
        self.check(ctx.settings)
        publish_name = ctx.settings.get("VISION_PUBLISH_ITERATION_NAME")
        async with service_for(ctx) as cv:
            it = await chosen_iteration(ctx, cv, project_id)
            ctx.progress(f"Publishing {it.name} as {publish_name!r}")
            now = await cv.publish(project_id, it.id, publish_name, ctx.settings.get("VISION_PREDICTION_RESOURCE_ID"))
        ctx.state.set(published_iteration=it.id, publish_name=publish_name)
        summary = f"{it.name} published as {publish_name!r}" if now else f"{it.name} was already published as " \
                                                                        f"{publish_name!r}"
        return PublishResult(summary, it.id, publish_name, skipped=not now)


class ExportIteration:
    name = "export"
    title = "Export ONNX"
    locks_env_file = True

    def check(self, settings: Settings) -> None:
        export_flavor(settings.get("VISION_EXPORT_FLAVOR"))

    async def run(self, ctx: StepContext) -> ExportResult:
        project_id = chosen_project_id(ctx)
        flavor = export_flavor(ctx.settings.get("VISION_EXPORT_FLAVOR"))
        dest, downloads = ctx.workdir / "export", ctx.workdir / "downloads"
        for part in await ctx.blocking(remove_partial_downloads, downloads):
            ctx.log(f"removed {part.name}, a download an interrupted run left unfinished")
        async with service_for(ctx) as cv:
            it = await chosen_iteration(ctx, cv, project_id)
            zip_path = downloads / f"{it.id}-{flavor or 'default'}.zip"
            if (ctx.state.get("export_iteration"), ctx.state.get("export_flavor")) == (it.id, flavor or "") \
                    and (dest / "model.onnx").is_file() and zip_path.is_file():
                ctx.state.set(export_dir=dest, export_zip=zip_path)   # dropped when this step started
                return ExportResult(f"{dest} already holds {it.name} ({flavor})", dest, zip_path, flavor or "",
                                    tuple(sorted(p.name for p in dest.iterdir())), True, skipped=True)
            if not it.exportable:
                raise UserError(f"{it.name} cannot be exported (its domain is not a compact domain, or it is not "
                                "trained)", "use a project on a compact domain such as 'General (compact)'")
            export, requested = await cv.request_export(project_id, it.id, flavor)
            kind = f"ONNX export (flavor {flavor})" if flavor else "ONNX export (default flavor)"
            ctx.log(f"requested an {kind} of {it.name}" if requested else
                    f"reusing the existing {kind} of {it.name} ({export.status})")
            export = await cv.wait_export(project_id, it.id, flavor, on_poll=lambda e, s: ctx.progress(
                f"Custom Vision is exporting ({s:.0f} s)"))
            try:
                await cv.download_export(export.download_uri, zip_path, on_progress=DownloadProgress(ctx))
            except DownloadRefused:
                ctx.log("the download link was refused; asking for a fresh one", level="warning")
                export = await cv.wait_export(project_id, it.id, flavor)
                await cv.download_export(export.download_uri, zip_path, on_progress=DownloadProgress(ctx))
        names = await ctx.blocking(verify_export_zip, zip_path)
        await ctx.blocking(safe_extract, zip_path, dest)
        ctx.state.set(export_dir=dest, export_zip=zip_path, export_iteration=it.id, export_flavor=flavor or "")
        size = zip_path.stat().st_size
        summary = f"{it.name} exported as ONNX ({flavor or 'default flavor'}, {size / 1024:.0f} KiB) into {dest}"
        return ExportResult(summary, dest, zip_path, flavor or "", tuple(names), not requested)
