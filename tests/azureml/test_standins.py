"""The offline Azure's own promises: a killed run's deployment containers are swept by the next emulator;
the Resource Manager refuses requests without a valid token and keeps ARM's error shape."""

from __future__ import annotations

import subprocess

import requests

from cvtriton_standins.arm_deployments import LABEL, PID_LABEL, DeploymentRunner


def test_containers_of_a_killed_emulator_are_swept(docker_api, standin_base):
    dead = subprocess.Popen(["true"])
    dead.wait()
    container = docker_api.create_container(standin_base, command=["sleep", "60"],
                                            labels={LABEL: "killed0", PID_LABEL: str(dead.pid)})
    docker_api.start(container)
    try:
        DeploymentRunner("fresh", pull_auth=lambda image: None, time_scale=lambda: 1.0)
        assert not docker_api.containers(all=True, filters={"id": container["Id"]})
    finally:
        if docker_api.containers(all=True, filters={"id": container["Id"]}):
            docker_api.remove_container(container, force=True)


def test_resource_manager_wants_a_valid_token(azure):
    url = (f"{azure.arm.url}/subscriptions/{azure.arm.subscription}/resourceGroups/{azure.arm.resource_group}/"
           f"providers/Microsoft.MachineLearningServices/workspaces/{azure.arm.workspace}?api-version=2025-12-01")
    anonymous = requests.get(url, timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "AuthenticationFailed"
    wrong_audience = azure.issuer.issue("https://management.azure.com/")[0]
    refused = requests.get(url, headers={"Authorization": f"Bearer {wrong_audience}"}, timeout=10)
    assert refused.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    good = requests.get(url, headers={"Authorization": f"Bearer {azure.issuer.issue(azure.arm.url)[0]}"},
                        timeout=10)
    assert good.status_code == 200 and good.json()["properties"]["containerRegistry"].endswith("/crcvtriton")
    missing = requests.get(url.replace(azure.arm.workspace, "nope"), timeout=10,
                           headers={"Authorization": f"Bearer {azure.issuer.issue(azure.arm.url)[0]}"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"


def test_blob_hosts_reach_azurite_through_the_proxy_and_nothing_else_does(azure):
    from azure.storage.blob import BlobServiceClient

    from cvtriton_standins.arm_assets import STORAGE_CONTAINER
    from cvtriton_standins.azurite import ACCOUNT, ACCOUNT_KEY

    suffix = azure.arm.cloud_metadata()["suffixes"]["storage"]
    client = BlobServiceClient(f"https://{ACCOUNT}.blob.{suffix}", credential=ACCOUNT_KEY,   # HTTPS_PROXY applies
                               retry_total=0)
    container = client.get_container_client(STORAGE_CONTAINER)
    container.upload_blob("probe/a.txt", b"x" * 1000)
    assert container.download_blob("probe/a.txt").readall() == b"x" * 1000
    assert azure.proxy.puts() == 1 and all(host == f"{ACCOUNT}.blob.{suffix}" for _, host, _, _ in azure.proxy.requests)
    azure.proxy.drop_writes(1)        # no retries here: the upload fails, nothing is written
    try:
        container.upload_blob("probe/b.txt", b"y", connection_timeout=5)
        raise AssertionError("the dropped upload succeeded")
    except Exception as exc:   # noqa: BLE001 - azure-core's ServiceRequestError / ServiceResponseError
        assert "b.txt" not in [b.name for b in container.list_blobs()], exc
    proxies = {"https": azure.proxy.url}
    try:
        requests.get("https://example.invalid/", proxies=proxies, timeout=5)
        raise AssertionError("the proxy tunnelled a host that is not blob storage")
    except requests.exceptions.ProxyError as exc:
        assert "403" in str(exc)
