"""CustomVisionService drives the real SDK against the emulator: listings, errors, retries, reconciliation."""

from __future__ import annotations

import socket
import time

import pytest

from cvtriton_core.adapters.customvision import CustomVisionService
from cvtriton_core.adapters.customvision_ops import DownloadRefused
from cvtriton_core.adapters.export_download import verify_export_zip
from cvtriton_core.adapters.retry import RetryPolicy
from cvtriton_core.errors import SettingsError, StepFailed, UserError
from cvtriton_core.settings import Settings

from .conftest import CV_KEY, PREDICTION_RESOURCE

FAST = RetryPolicy(base_s=0.01, cap_s=0.05)


def service(emulator, notes: list[str] | None = None, **kwargs) -> CustomVisionService:
    return CustomVisionService(emulator.url, CV_KEY, notify=(notes.append if notes is not None else None),
                               policy=kwargs.pop("policy", FAST), **kwargs)


async def test_check_connection_and_listings(cv_emulator):
    cls_id = cv_emulator.add_project("shapes")
    od_id = cv_emulator.add_project("shelves", task="ObjectDetection", exportable=False)
    cv_emulator.add_project("fresh", task="Classification-Multilabel", trained=False)
    cv = service(cv_emulator)
    line = await cv.check_connection()
    assert line == f"Custom Vision v3.4-preview at {cv_emulator.url}: 3 project(s), 10 domains"
    domains = {d.id: d for d in await cv.list_domains()}
    assert domains["0732100f-1a38-4e49-a514-c9b44c697ab5"].exportable
    assert domains["a27d5ca5-bb19-49d8-a70a-fec086c47f5b"].type == "ObjectDetection"
    projects = {p.name: p for p in await cv.list_projects()}
    assert (projects["shapes"].task, projects["shapes"].domain_name, projects["shapes"].exportable) == \
        ("Classification-Multiclass", "General (compact)", True)
    assert (projects["shelves"].task, projects["shelves"].domain_name, projects["shelves"].exportable) == \
        ("ObjectDetection", "General", False)
    assert projects["fresh"].task == "Classification-Multilabel" and projects["fresh"].created is not None
    (it,) = await cv.list_iterations(cls_id)
    assert it.status == "Completed" and it.exportable and it.trained_at is not None
    assert 0 < it.recall < it.precision <= 1 and it.average_precision is not None
    (od_it,) = await cv.list_iterations(od_id)
    assert od_it.exportable is False and od_it.published_name is None
    assert await cv.list_iterations(projects["fresh"].id) == []


async def test_wrong_key_is_bad_input_and_never_shows_the_key(cv_emulator):
    wrong = "f" * 32
    with pytest.raises(UserError) as err:
        await CustomVisionService(cv_emulator.url, wrong).check_connection()
    assert err.value.exit_code == 2
    assert "refused the training key" in str(err.value) and "VISION_TRAINING_KEY" in str(err.value)
    assert wrong not in str(err.value) and "\n" not in str(err.value)


async def test_wrong_endpoint_path_and_unreachable_host(cv_emulator):
    with pytest.raises(UserError) as err:
        await CustomVisionService(cv_emulator.url + "/not-custom-vision", CV_KEY).check_connection()
    assert err.value.exit_code == 2 and "does not serve the Custom Vision training API" in str(err.value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                     # closed again: nothing listens there
    with pytest.raises(StepFailed) as err:
        await CustomVisionService(f"http://127.0.0.1:{port}", CV_KEY).check_connection()
    assert err.value.exit_code == 1 and "cannot reach Custom Vision" in str(err.value)
    assert "connection refused" in str(err.value)


def test_from_settings_names_the_missing_variable(cv_emulator):
    with pytest.raises(SettingsError) as err:
        CustomVisionService.from_settings(Settings({"VISION_TRAINING_ENDPOINT": cv_emulator.url}))
    assert str(err.value).startswith("VISION_TRAINING_KEY is not set")
    with pytest.raises(SettingsError, match="VISION_TRAINING_ENDPOINT='ftp://x' is not valid"):
        CustomVisionService.from_settings(Settings({"VISION_TRAINING_ENDPOINT": "ftp://x",
                                                    "VISION_TRAINING_KEY": CV_KEY}))


async def test_lost_create_response_is_reconciled_not_repeated(cv_emulator):
    notes: list[str] = []
    cv_emulator.inject_error(500, ops=("create_project",), after=True)
    project = await service(cv_emulator, notes).create_project("once", "Classification-Multiclass")
    assert [p.name for p in cv_emulator.store.projects.values()] == ["once"]
    assert cv_emulator.counters["create_project"] == 1                 # no second POST
    assert project.domain_name == "General (compact)" and project.exportable
    assert any("had gone through" in n for n in notes)


async def test_lost_tag_and_training_responses_are_reconciled(cv_emulator):
    project_id = cv_emulator.add_project("p", trained=False, tags=("a", "b"), images_per_tag=5)
    cv = service(cv_emulator)
    cv_emulator.inject_error(502, ops=("create_tag",), after=True)
    tags = await cv.ensure_tags(project_id, ["a", "c"])
    assert set(tags) == {"a", "c"} and cv_emulator.counters["create_tag"] == 1
    cv_emulator.inject_error(504, ops=("train_project",), after=True)
    iteration, started = await cv.train(project_id)
    assert started and [i.id for i in await cv.list_iterations(project_id)] == [iteration.id]
    assert cv_emulator.counters["trainings_started"] == 1 and cv_emulator.counters["train_project"] == 1


async def test_429_storm_on_a_post_waits_and_goes_on(cv_emulator):
    notes: list[str] = []
    cv_emulator.inject_429(6, retry_after=0, ops=("create_project",))
    await service(cv_emulator, notes).create_project("patient", "ObjectDetection")
    assert cv_emulator.counters["create_project"] == 7
    assert sum("rate limited (HTTP 429)" in n for n in notes) == 6
    assert [p.name for p in cv_emulator.store.projects.values()] == ["patient"]


async def test_retry_after_is_honoured_and_the_budget_is_kept(cv_emulator):
    cv_emulator.inject_429(1, retry_after=1, ops=("get_projects",))
    start = time.monotonic()
    assert await service(cv_emulator).list_projects() == []
    assert time.monotonic() - start >= 1.0
    cv_emulator.inject_429(50, retry_after=1, ops=("get_projects",))
    with pytest.raises(StepFailed) as err:
        await service(cv_emulator, policy=RetryPolicy(budget_s=0.5)).list_projects()
    assert "kept rate-limiting" in str(err.value) and err.value.exit_code == 1


async def test_training_failure_surfaces_the_service_reason(cv_emulator):
    project_id = cv_emulator.add_project("p", trained=False)
    cv_emulator.fail_next_training("Image 7 of tag 'red' could not be decoded")
    cv = service(cv_emulator)
    iteration, started = await cv.train(project_id)
    with pytest.raises(StepFailed) as err:
        await cv.wait_training(project_id, iteration.id)
    assert "Image 7 of tag 'red' could not be decoded" in str(err.value) and err.value.exit_code == 1


async def test_training_not_needed_or_already_running_start_nothing(cv_emulator):
    project_id = cv_emulator.add_project("done")
    cv = service(cv_emulator)
    iteration, started = await cv.train(project_id)
    assert not started and iteration.status == "Completed"
    assert cv_emulator.counters["trainings_started"] == 0
    fresh = cv_emulator.add_project("fresh", trained=False)
    cv_emulator.store.training_s = 30
    first, _ = await cv.train(fresh)
    second, started = await cv.train(fresh)
    assert (second.id, started) == (first.id, False) and cv_emulator.counters["trainings_started"] == 1


async def test_publish_is_idempotent_and_needs_a_valid_resource(cv_emulator):
    project_id = cv_emulator.add_project("p")
    cv = service(cv_emulator)
    (it,) = await cv.list_iterations(project_id)
    with pytest.raises(SettingsError, match="VISION_PREDICTION_RESOURCE_ID is not set"):
        await cv.publish(project_id, it.id, "v1", None)
    with pytest.raises(UserError) as err:
        await cv.publish(project_id, it.id, "v1", "/subscriptions/x")
    assert err.value.exit_code == 2 and "VISION_PREDICTION_RESOURCE_ID" in str(err.value)
    assert await cv.publish(project_id, it.id, "v1", PREDICTION_RESOURCE) is True
    assert await cv.publish(project_id, it.id, "v1", PREDICTION_RESOURCE) is False
    assert cv_emulator.counters["publish_iteration"] == 2                # the refused one + the real one
    with pytest.raises(UserError, match="already published as 'v1'"):
        await cv.publish(project_id, it.id, "v2", PREDICTION_RESOURCE)


async def test_export_is_reused_downloaded_and_verified(cv_emulator, tmp_path):
    project_id = cv_emulator.add_project("p", tags=("cat", "dog"))
    cv = service(cv_emulator)
    (it,) = await cv.list_iterations(project_id)
    first, requested = await cv.request_export(project_id, it.id, "ONNXFloat16")
    assert requested and first.status == "Exporting" and first.download_uri == ""
    again, requested = await cv.request_export(project_id, it.id, "ONNXFloat16")
    assert not requested and cv_emulator.counters["exports_started"] == 1
    done = await cv.wait_export(project_id, it.id, "ONNXFloat16")
    assert done.status == "Done" and done.flavor == "ONNXFloat16"
    seen: list[tuple[int, int | None]] = []
    path = await cv.download_export(done.download_uri, tmp_path / "x.zip", on_progress=lambda d, t: seen.append((d, t)))
    assert {"model.onnx", "labels.txt", "cvexport.manifest"} <= set(verify_export_zip(path))
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)
    cv_emulator.expire_download_links()                  # a SAS that has run out: 403 from the blob store
    with pytest.raises(DownloadRefused, match=r"refused \(HTTP 403\).*fresh link"):
        await cv.download_export(done.download_uri, tmp_path / "y.zip")
    with pytest.raises(DownloadRefused, match=r"refused \(HTTP 404\)"):
        await cv.download_export(done.download_uri.replace("/exports/", "/exports/0"), tmp_path / "y.zip")
    assert not (tmp_path / "y.zip").exists()
    fresh = await cv.wait_export(project_id, it.id, "ONNXFloat16")
    assert fresh.download_uri != done.download_uri
    assert (await cv.download_export(fresh.download_uri, tmp_path / "y.zip")).read_bytes() == path.read_bytes()


async def test_export_refusals_are_bad_input(cv_emulator):
    project_id = cv_emulator.add_project("general", exportable=False)
    cv = service(cv_emulator)
    (it,) = await cv.list_iterations(project_id)
    with pytest.raises(UserError) as err:
        await cv.request_export(project_id, it.id, "ONNX12")
    assert err.value.exit_code == 2 and "compact domain" in str(err.value)
    with pytest.raises(UserError, match="VISION_EXPORT_FLAVOR=ONNX16 is not an ONNX export flavor"):
        await cv.request_export(project_id, it.id, "ONNX16")
    assert cv_emulator.counters["exports_started"] == 0
