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
