"""The deploy/ files parse and agree with the package: image, entry point, commands, ports."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml

from conftest import ROOT
from search.cli import build_parser

DEPLOY = ROOT / "deploy"
IMAGE = "search:latest"
DASHBOARD_PORT, MLFLOW_PORT, GCS_PORT, CLIENT_PORT = 8265, 5000, 6379, 10001


def load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


def test_the_dockerfile_installs_this_package_and_exposes_the_ports_the_rest_use() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r'pip install "\.\[server\]"', text)
    for folder in ("search", "models"):
        assert f"COPY {folder} ./{folder}" in text and (ROOT / folder).is_dir()
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    assert exposed == {GCS_PORT, CLIENT_PORT, DASHBOARD_PORT, MLFLOW_PORT}
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'search = "search.cli:entry"' in pyproject and "server = [" in pyproject  # the entry point and extra


def published(service: dict) -> list[tuple[str, int, int]]:
    """(bind address, host port, container port) of each ports: entry, with ${VAR:-default} resolved."""
    out = []
    for entry in service.get("ports", []):
        resolved = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", entry)
        bind, host, container = resolved.split(":")
        out.append((bind, int(host), int(container)))
    return out


def test_compose_binds_to_localhost_and_wires_mlflow_and_ray_consistently() -> None:
    compose = load("compose.yaml")
    services = compose["services"]
    assert {"postgres", "mlflow", "ray-head", "ray-worker"} <= set(services)
    for name in ("mlflow", "ray-head", "ray-worker"):
        assert services[name]["image"] == IMAGE and services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    for name, service in services.items():
        for bind, _, _ in published(service):
            assert bind == "127.0.0.1", f"{name} publishes beyond localhost by default"

    mlflow = services["mlflow"]["command"]
    assert mlflow[:2] == ["mlflow", "server"] and mlflow[mlflow.index("--workers") + 1] == "2"
    assert mlflow[mlflow.index("--backend-store-uri") + 1].startswith("postgresql://mlflow:")
    assert mlflow[mlflow.index("--port") + 1] == str(MLFLOW_PORT)
    assert (MLFLOW_PORT, MLFLOW_PORT) in [(h, c) for _, h, c in published(services["mlflow"])]

    head = services["ray-head"]["command"]
    assert head[:4] == ["ray", "start", "--head", "--block"]
    assert head[head.index("--dashboard-port") + 1] == str(DASHBOARD_PORT)
    assert head[head.index("--port") + 1] == str(GCS_PORT)
    assert (DASHBOARD_PORT, DASHBOARD_PORT) in [(h, c) for _, h, c in published(services["ray-head"])]
    worker = services["ray-worker"]["command"]
    assert worker[:3] == ["ray", "start", "--address"] and worker[3] == f"ray-head:{GCS_PORT}"
    for name in ("ray-head", "ray-worker"):
        env = services[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and "RAY_AUTH_TOKEN" in env
        assert env["MLFLOW_TRACKING_URI"] == f"http://mlflow:{MLFLOW_PORT}"
    gpus = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpus["driver"] == "nvidia" and "gpu" in gpus["capabilities"]


def test_the_cluster_launcher_starts_ray_with_the_same_ports_and_image() -> None:
    cluster = load("ray-cluster.yaml")
    assert cluster["docker"]["image"] == IMAGE
    (head,) = [c for c in cluster["head_start_ray_commands"] if c.startswith("ray start")]
    assert "--head" in head and f"--port {GCS_PORT}" in head and f"--dashboard-port {DASHBOARD_PORT}" in head
    assert any(f"$RAY_HEAD_IP:{GCS_PORT}" in c for c in cluster["worker_start_ray_commands"])
    assert any("RAY_AUTH_MODE=token" in option for option in cluster["docker"]["run_options"])


@pytest.mark.parametrize("name", ["kuberay/raycluster.yaml", "kuberay/rayjob.yaml"])
def test_kuberay_manifests_use_the_image_token_and_gpu_workers(name: str) -> None:
    manifest = load(name)
    assert manifest["apiVersion"] == "ray.io/v1"
    spec = manifest["spec"] if manifest["kind"] == "RayCluster" else manifest["spec"]["rayClusterSpec"]
    assert spec["rayVersion"].startswith("2.60")
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == IMAGE
    assert {p["containerPort"] for p in head["ports"]} == {GCS_PORT, DASHBOARD_PORT, CLIENT_PORT}
    assert {"name": "RAY_AUTH_MODE", "value": "token"} in head["env"]
    worker = spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["image"] == IMAGE and worker["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_the_rayjob_entrypoint_is_a_valid_search_command() -> None:
    entrypoint = shlex.split(load("kuberay/rayjob.yaml")["spec"]["entrypoint"])
    assert entrypoint[:3] == ["python", "-m", "search.cli"]
    args = build_parser().parse_args(entrypoint[3:])  # exits on an unknown flag
    assert args.command == "run" and args.backend == "ray" and args.address == "auto"
    assert args.tracking_uri == f"http://mlflow:{MLFLOW_PORT}"


def test_the_deploy_readme_names_every_file_and_the_auth_settings() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert str(path.relative_to(DEPLOY)) in readme or path.name in readme, path
    for words in ("RAY_AUTH_TOKEN", "BIND_ADDRESS", "basic-auth", "without isolation", "--tracking-uri"):
        assert words in readme
