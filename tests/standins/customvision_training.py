"""Training, publishing and export rules of the Custom Vision emulator (a mixin of its ``Store``).

Training and export run on the clock: an iteration is "Training" until ``training_s`` has passed, then
"Completed" (or "Failed" with ``trainingErrorDetails`` when a failure was injected); an export is "Exporting"
with an empty ``downloadUri`` until ``export_s`` has passed, then "Done" with a SAS-style URL on the emulator.
The service trains one iteration at a time, refuses to train when nothing changed, and refuses a second export
of the same platform and flavor ("already queued for export").
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from cvtriton_standins.customvision_records import (DOMAIN_BY_ID, EXPORT_PLATFORMS, MAX_ITERATIONS,
                                                    MIN_IMAGES_PER_TAG, MIN_REGIONS_PER_TAG, ONNX_FLAVORS,
                                                    PREDICTION_RESOURCE, PUBLISH_NAME, ApiError, Export, Iteration,
                                                    Project, _new_id)


class TrainingRules:
    training_s: float
    export_s: float
    next_training_failure: str | None
    next_export_failure: str | None
    allowed_prediction_resources: set[str] | None
    expired_links_to_issue: int

    # training ---------------------------------------------------------------------------------
    def train(self, project: Project, force: bool) -> Iteration:
        current = [self.status(it) for it in project.iterations]
        if "Training" in current:
            raise ApiError(400, "BadRequestTrainingAlreadyInProgress", "Training is already in progress.")
        if not project.changed and "Completed" in current and not force:
            raise ApiError(400, "BadRequestTrainingNotNeeded", "Nothing changed since the last training.")
        if len(project.iterations) >= MAX_ITERATIONS:
            raise ApiError(400, "BadRequestExceedIterationPerProjectLimit",
                           f"A project holds at most {MAX_ITERATIONS} iterations; delete one first.")
        counts = self._training_counts(project)
        self._validate_training(project, counts)
        iteration = Iteration(_new_id(), f"Iteration {len(project.iterations) + 1}", project.domain_id,
                              project.classification_type, time.monotonic(), counts,
                              fail_reason=self.next_training_failure)
        self.next_training_failure = None
        project.iterations.append(iteration)
        project.changed = False
        self.counters["trainings_started"] += 1
        return iteration

    def _training_counts(self, project: Project) -> dict[str, int]:
        counts = {tag.name: 0 for tag in project.tags.values()}
        for img in project.images.values():
            for tag_id in img.tag_ids:
                counts[project.tags[tag_id].name] += 1
            for region in img.regions:
                counts[project.tags[region["tagId"]].name] += 1
        return counts

    def _validate_training(self, project: Project, counts: dict[str, int]) -> None:
        if project.domain.type == "ObjectDetection":
            used = {n: c for n, c in counts.items() if c}
            short = sorted(n for n, c in used.items() if c < MIN_REGIONS_PER_TAG)
            if not used or short:
                raise ApiError(400, "BadRequestDetectionTrainingValidationFailed",
                               f"Not enough regions to train: each tag needs at least {MIN_REGIONS_PER_TAG} "
                               f"tagged regions (short: {', '.join(short) or 'no tagged images'}).")
            return
        used = {n: c for n, c in counts.items() if c}
        short = sorted(n for n, c in used.items() if c < MIN_IMAGES_PER_TAG)
        if len(used) < 2 or short:
            raise ApiError(400, "BadRequestClassificationTrainingValidationFailed",
                           f"Your project can't be trained just yet: it needs at least 2 tags with at least "
                           f"{MIN_IMAGES_PER_TAG} images each (short: {', '.join(short) or 'fewer than 2 tags'}).")
        if project.classification_type == "Multiclass":
            multi = sum(1 for img in project.images.values() if len(img.tag_ids) > 1)
            if multi:
                raise ApiError(400, "BadRequestMultiClassClassificationTrainingValidationFailed",
                               f"{multi} images carry more than one tag in a multiclass project.")

    def status(self, it: Iteration) -> str:
        if time.monotonic() - it.started < self.training_s:
            return "Training"
        return "Failed" if it.fail_reason else "Completed"

    def iteration(self, project: Project, iteration_id: str) -> Iteration:
        for it in project.iterations:
            if it.id == iteration_id.lower():
                return it
        raise ApiError(404, "NotFoundIteration", f"Iteration {iteration_id} not found.")

    def iteration_json(self, project: Project, it: Iteration) -> dict[str, Any]:
        status = self.status(it)
        domain = DOMAIN_BY_ID[it.domain_id]
        exportable = domain.exportable and status == "Completed"
        return {"id": it.id, "name": it.name, "status": status, "created": it.created, "lastModified": it.created,
                "trainedAt": it.created if status != "Training" else None, "projectId": project.id,
                "exportable": exportable, "exportableTo": EXPORT_PLATFORMS if exportable else [],
                "domainId": it.domain_id, "classificationType": it.classification_type, "trainingType": "Regular",
                "reservedBudgetInHours": 0, "trainingTimeInMinutes": 1, "publishName": it.publish_name or None,
                "originalPublishResourceId": it.publish_resource or None,
                "trainingErrorDetails": it.fail_reason if status == "Failed" else None}

    def performance_json(self, project: Project, it: Iteration) -> dict[str, Any]:
        if self.status(it) != "Completed":
            raise ApiError(400, "BadRequestIterationIsNotTrained", "The iteration is not trained yet.")
        per_tag = []
        for tag in project.tags.values():
            n = it.tag_counts.get(tag.name, 0)
            if n:
                score = round(min(0.99, 0.6 + 0.01 * n), 4)      # more examples, better scores
                per_tag.append({"id": tag.id, "name": tag.name, "precision": score, "precisionStdDeviation": 0.0,
                                "recall": round(score - 0.05, 4), "recallStdDeviation": 0.0,
                                "averagePrecision": round(score - 0.02, 4)})
        mean = (lambda key: round(sum(t[key] for t in per_tag) / len(per_tag), 4) if per_tag else 0.0)
        return {"perTagPerformance": per_tag, "precision": mean("precision"), "precisionStdDeviation": 0.0,
                "recall": mean("recall"), "recallStdDeviation": 0.0, "averagePrecision": mean("averagePrecision")}

    # publish ----------------------------------------------------------------------------------
    def publish(self, project: Project, it: Iteration, name: str | None, resource: str | None, overwrite: bool) -> None:
        if self.status(it) != "Completed":
            raise ApiError(400, "BadRequestIterationIsNotTrained", "Only a completed iteration can be published.")
        if not name or not PUBLISH_NAME.match(name):
            raise ApiError(400, "BadRequestInvalidPublishName", f"Invalid publish name '{name}'.")
        if not resource or not PREDICTION_RESOURCE.match(resource) or (
                self.allowed_prediction_resources is not None and resource not in self.allowed_prediction_resources):
            raise ApiError(400, "BadRequestInvalidPublishTarget",
                           "The prediction resource id is not a valid Custom Vision prediction resource.")
        if it.publish_name:
            raise ApiError(400, "BadRequestIterationIsPublished",
                           f"The iteration is already published as '{it.publish_name}'.")
        holder = next((o for o in project.iterations if o.publish_name == name), None)
        if holder is not None:
            if not overwrite:
                raise ApiError(400, "BadRequestInvalidPublishName",
                               f"The publish name '{name}' is in use by {holder.name}; pass overwrite=true.")
            holder.publish_name, holder.publish_resource = "", ""
        it.publish_name, it.publish_resource = name, resource

    # export -----------------------------------------------------------------------------------
    def export(self, project: Project, it: Iteration, platform: str | None, flavor: str | None) -> Export:
        status = self.status(it)
        if status == "Training":
            raise ApiError(400, "BadRequestExportWhileTraining", "Cannot export while the iteration is training.")
        if status != "Completed":
            raise ApiError(400, "BadRequestIterationIsNotTrained", "Only a completed iteration can be exported.")
        domain = DOMAIN_BY_ID[it.domain_id]
        if not domain.exportable:
            raise ApiError(400, "BadRequestNotSupported",
                           f"Iteration {it.id} is not exportable: domain '{domain.name}' is not a compact domain.")
        if platform not in EXPORT_PLATFORMS:
            raise ApiError(400, "BadRequestNotSupported", f"Unknown export platform '{platform}'.")
        if flavor is not None:
            if platform != "ONNX" or flavor.lower() not in ONNX_FLAVORS:
                raise ApiError(400, "BadRequestNotSupported",
                               f"Flavor '{flavor}' is not supported for platform '{platform}'.")
            flavor = ONNX_FLAVORS[flavor.lower()]
        for existing in it.exports:
            if existing.platform == platform and existing.flavor == flavor and self.export_status(existing) != "Failed":
                raise ApiError(400, "BadRequestExportAlreadyInProgress", f"{it.id} is already queued for export.")
        it.exports = [e for e in it.exports if not (e.platform == platform and e.flavor == flavor)]
        export = Export(platform, flavor, time.monotonic(), fail_reason=self.next_export_failure)
        self.next_export_failure = None
        it.exports.append(export)
        self.counters["exports_started"] += 1
        return export

    def export_status(self, export: Export) -> str:
        if time.monotonic() - export.started < self.export_s:
            return "Exporting"
        return "Failed" if export.fail_reason else "Done"

    def export_json(self, export: Export, base_url: str) -> dict[str, Any]:
        """Like the service, every answer carries a freshly signed link (a SAS with its own ``sig``)."""
        status = self.export_status(export)
        uri = ""
        if status == "Done":
            sig = uuid.uuid4().hex[:24]
            if self.expired_links_to_issue > 0:
                self.expired_links_to_issue -= 1          # handed out already expired: the blob store refuses it
            else:
                export.signatures.add(sig)
            uri = f"{base_url}/exports/{export.token}.zip?sv=2020-08-04&se=2099-01-01T00%3A00%3A00Z&sr=b&sp=r&sig={sig}"
        return {"platform": export.platform, "status": status, "downloadUri": uri, "flavor": export.flavor,
                "newerVersionAvailable": False}

    def find_export(self, token: str) -> tuple[Project, Iteration, Export] | None:
        for project in self.projects.values():
            for it in project.iterations:
                for export in it.exports:
                    if export.token == token and self.export_status(export) == "Done":
                        return project, it, export
        return None
