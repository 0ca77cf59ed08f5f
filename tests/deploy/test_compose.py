"""The production compose file read as an operator would, and checked statically where the service
cannot run here: Traefik and Grafana images are in no registry this machine reaches (Docker Hub is
out of reach; Debian, PyPI and npm do not package them), so their configuration is checked here and
the stack test (test_stack.py) reaches the portal directly. The Docker socket proxy runs for real
in front of this machine's Docker engine."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml
from django.conf import settings

from tests.conftest import docker_engine_answers, require_service
from tests.live_server import free_port

ROOT = Path(settings.BASE_DIR)
DEPLOY = ROOT / "deploy"
TESTS = ipaddress.ip_network("198.18.0.0/15")


@pytest.fixture(scope="module")
def stack_config(tmp_path_factory) -> dict:
    compose = shutil.which("docker-compose")
    require_service(compose is not None, "docker-compose is not installed (Debian package: docker-compose)")
    workdir = tmp_path_factory.mktemp("compose")
    env = []
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        env.append(line + "test-value" if line.endswith("=") and not line.startswith("#") else line)
    (workdir / ".env").write_text("\n".join(env) + "\n")
    result = subprocess.run(
        [compose, "--env-file", str(workdir / ".env"), "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "QM_ENV_FILE": str(workdir / ".env")},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _version(image: str) -> tuple[int, ...]:
    tag = image.rsplit(":", 1)[1]
    return tuple(int(part) for part in re.match(r"v?(\d+)\.(\d+)\.(\d+)", tag).groups())


def test_every_service_rotates_its_logs_has_limits_and_a_pinned_image(stack_config):
    for name, service in stack_config["services"].items():
        options = service["logging"]["options"]
        assert service["logging"]["driver"] == "json-file" and options["max-size"] and options["max-file"], name
        assert service.get("mem_limit"), f"{name} has no memory limit"
        if name not in ("engine", "migrate"):  # one-shots
            assert service.get("cpus"), f"{name} has no CPU limit"
        image = service["image"]
        if not image.startswith("quantmesh/"):
            assert re.search(r":v?\d+\.\d+[.\d]*(-\w+)?$", image), f"{name}: {image} is not pinned to a release"


def test_only_the_socket_proxy_mounts_the_docker_socket(stack_config):
    for name, service in stack_config["services"].items():
        sources = [
            volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
            for volume in service.get("volumes", [])
        ]
        mounts_socket = any(source.endswith("docker.sock") for source in sources)
        assert mounts_socket == (name == "docker-proxy"), name
    proxy = {"worker": "tcp://docker-proxy:2375", "portal": "tcp://docker-proxy:2376"}
    for name, host in proxy.items():
        assert stack_config["services"][name]["environment"]["DOCKER_HOST"] == host
    assert "--providers.docker.endpoint=tcp://docker-proxy:2377" in stack_config["services"]["traefik"]["command"]


def test_traefik_is_past_the_path_matcher_advisories_and_hides_internal_paths(stack_config):
    traefik = stack_config["services"]["traefik"]
    version = _version(traefik["image"])
    # CVE-2025-32431 (fixed 3.3.6/3.4.1) and CVE-2026-48020 (fixed 3.6.19/3.7.3).
    assert version >= (3, 7, 3) or (3, 6, 19) <= version < (3, 7, 0), traefik["image"]
    rule = stack_config["services"]["portal"]["labels"]["traefik.http.routers.portal.rule"]
    assert "!PathPrefix(`/internal/`)" in rule and "!PathPrefix(`/grafana`)" in rule
    assert "ports" not in stack_config["services"]["portal"]
    assert traefik["healthcheck"]["test"][-2:] == ["healthcheck", "--ping"]
    assert "--ping=true" in traefik["command"]


def test_grafana_is_current_and_knows_visitors_only_from_the_portal(stack_config):
    grafana = stack_config["services"]["grafana"]
    assert _version(grafana["image"]) >= (13, 2, 0), grafana["image"]
    assert "ports" not in grafana  # reached only through Traefik's forward-auth
    labels = grafana["labels"]
    assert labels["traefik.http.routers.grafana.middlewares"] == "grafana-portal-identity"
    assert labels["traefik.http.middlewares.grafana-portal-identity.forwardauth.address"].endswith(
        "/internal/grafana-auth"
    )
    ini = (DEPLOY / "grafana" / "grafana.ini").read_text()
    assert re.search(r"\[auth\.proxy\][^\[]*enabled\s*=\s*true", ini)
    assert re.search(r"header_name\s*=\s*X-WEBAUTH-USER", ini)
    sources = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "quantmesh.yml").read_text())
    assert [s["url"] for s in sources["datasources"]] == ["http://portal:8000/internal/prometheus-tenant"]


def test_networks_use_addresses_reserved_for_testing(stack_config):
    platform = stack_config["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_network(platform).subnet_of(TESTS)
    assert stack_config["networks"]["instances"]["external"] is True  # made by `make deploy`
    makefile = (ROOT / "Makefile").read_text()
    subnet = re.search(r"QM_INSTANCES_SUBNET \?= (\S+)", makefile).group(1)
    assert ipaddress.ip_network(subnet).subnet_of(TESTS)


def test_alertmanager_config_renders_and_passes_amtool(tmp_path):
    """start.sh fills the placeholders from the environment; Alertmanager's own checker accepts it."""
    require_service(docker_engine_answers(), "no Docker engine answers (deploy/scripts/docker-up.sh starts one)")
    _offline_image()
    script = "sed 's|^exec alertmanager .*|amtool check-config /tmp/alertmanager.yml|' /etc/alertmanager/start.sh | sh"
    result = subprocess.run(
        ["docker", "run", "--rm", "--network=none", "-v", f"{DEPLOY / 'alertmanager'}:/etc/alertmanager:ro",
         "-e", "QM_OPERATOR_EMAIL=ops@example.com", "-e", "ALERT_SMTP_SMARTHOST=smtp.example.com:587",
         "-e", "ALERT_SMTP_FROM=alerts@example.com", "-e", "ALERT_SMTP_USERNAME=alerts",
         "-e", 'ALERT_SMTP_PASSWORD=pa"ss\\word&|', "-e", "ALERT_SMTP_REQUIRE_TLS=true",
         "quantmesh/offline:bookworm", "sh", "-c", script],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    assert "receivers:\n - operator" in result.stdout.replace("  ", " ") or "1 receivers" in result.stdout


def _offline_image() -> None:
    built = subprocess.run(
        ["docker", "build", "--network=host", "-q", "-t", "quantmesh/offline:bookworm", str(DEPLOY / "offline")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr


@pytest.fixture(scope="module")
def docker_proxy(tmp_path_factory):
    """deploy/docker-proxy/haproxy.cfg in front of this machine's Docker engine, on loopback ports."""
    require_service(docker_engine_answers(), "no Docker engine answers (deploy/scripts/docker-up.sh starts one)")
    _offline_image()
    ports = {"worker": free_port(), "portal": free_port(), "traefik": free_port()}
    config = (DEPLOY / "docker-proxy" / "haproxy.cfg").read_text()
    for frontend, default in (("worker", 2375), ("portal", 2376), ("traefik", 2377)):
        config = config.replace(f"bind :{default}", f"bind 127.0.0.1:{ports[frontend]}")
    path = tmp_path_factory.mktemp("proxy") / "haproxy.cfg"
    path.write_text(config)
    name = f"qm-docker-proxy-test-{ports['worker']}"
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "--network=host", "--user=root", "--cap-drop=ALL",
         "--read-only", "-v", "/var/run/docker.sock:/var/run/docker.sock", "-v", f"{path}:/h.cfg:ro",
         "quantmesh/offline:bookworm", "haproxy", "-db", "-f", "/h.cfg"],
        check=True, capture_output=True,
    )  # fmt: skip
    urls = {frontend: f"http://127.0.0.1:{port}" for frontend, port in ports.items()}
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(urls["worker"] + "/_ping", timeout=2)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.2)
    yield urls
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)


SAFE_CREATE = {
    "Image": "quantmesh/base:bookworm",
    "Cmd": ["true"],
    "HostConfig": {"Binds": ["qm-proxy-test-volume:/data:rw"], "CapDrop": ["ALL"], "NetworkMode": "none"},
}


@pytest.mark.parametrize(
    "host_config",
    [
        {"Privileged": True},
        {"privileged": True},  # Docker reads JSON keys case-insensitively
        {"Binds": ["/etc:/host-etc:ro"]},
        {"Binds": ["qm-data:/data:rw", "/etc:/host-etc:ro"]},
        {"Binds": ["/dev/shm/quantmesh-keys/../../../etc:/run/quantmesh:ro"]},
        {"Binds": ["/dev/shm/quantmesh-keys/qm-abc123-1:/etc:ro"]},
        {"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]},
        {"CapAdd": ["SYS_ADMIN"]},
        {"PidMode": "host"},
        {"NetworkMode": "host"},
        {"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda"}]},
    ],
    ids=[
        "privileged",
        "lowercase",
        "host-bind",
        "second-bind",
        "keys-dir-escape",
        "keys-dir-elsewhere",
        "bind-mount",
        "capability",
        "host-pid",
        "host-net",
        "device",
    ],
)
def test_the_socket_proxy_refuses_containers_that_would_give_the_host_away(docker_proxy, host_config):
    body = {**SAFE_CREATE, "HostConfig": {**SAFE_CREATE["HostConfig"], **host_config}}
    response = requests.post(docker_proxy["worker"] + "/v1.41/containers/create", json=body, timeout=10)
    assert response.status_code == 403


def test_the_socket_proxy_refuses_escaped_keys_and_oversized_bodies(docker_proxy):
    escaped = '{"Image": "quantmesh/base:bookworm", "HostConfig": {"\\u0050rivileged": true}}'
    response = requests.post(
        docker_proxy["worker"] + "/v1.41/containers/create",
        data=escaped,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 403
    padded = {**SAFE_CREATE, "Labels": {"padding": "x" * 13000}}
    assert requests.post(docker_proxy["worker"] + "/containers/create", json=padded, timeout=10).status_code == 403


def test_the_socket_proxy_gives_each_client_only_its_calls(docker_proxy):
    worker, portal, traefik = docker_proxy["worker"], docker_proxy["portal"], docker_proxy["traefik"]
    for base in (worker, portal, traefik):
        assert requests.get(base + "/v1.41/containers/json", timeout=10).status_code == 200
        assert requests.get(base + "/version", timeout=10).status_code == 200
    # What no client gets: exec, image pulls and builds, networks, swarm, system-wide calls.
    for method, path in [
        ("POST", "/v1.41/containers/abc/exec"),
        ("POST", "/v1.41/images/create?fromImage=alpine"),
        ("POST", "/v1.41/build"),
        ("POST", "/v1.41/networks/create"),
        ("GET", "/v1.41/secrets"),
        ("POST", "/v1.41/swarm/leave"),
        ("POST", "/v1.41/containers/prune"),
    ]:
        for base in (worker, portal, traefik):
            assert requests.request(method, base + path, timeout=10).status_code == 403, (base, method, path)
    # The portal and Traefik only read.
    for base in (portal, traefik):
        assert requests.post(base + "/v1.41/containers/create", json=SAFE_CREATE, timeout=10).status_code == 403
        assert requests.delete(base + "/v1.41/containers/abc", timeout=10).status_code == 403
        assert requests.post(base + "/v1.41/containers/abc/stop", timeout=10).status_code == 403
    # The worker's lifecycle calls reach the engine (here: a container that does not exist, 404).
    assert requests.post(worker + "/v1.41/containers/qm-proxy-test-none/stop", timeout=10).status_code == 404
    assert requests.get(portal + "/v1.41/containers/qm-proxy-test-none/logs?stdout=1", timeout=10).status_code == 404
    # A safe create passes, and so does an engine's own run-keys directory (read-only, at its place);
    # the containers and the volume are removed again.
    keys_dir = Path("/dev/shm/quantmesh-keys/qm-proxy-test-1")  # noqa: S108 (the worker's tmpfs path)
    keys_dir.mkdir(parents=True, exist_ok=True)
    with_keys = {**SAFE_CREATE, "HostConfig": {**SAFE_CREATE["HostConfig"]}}
    with_keys["HostConfig"]["Binds"] = [*SAFE_CREATE["HostConfig"]["Binds"], f"{keys_dir}:/run/quantmesh:ro"]
    try:
        for body in (SAFE_CREATE, with_keys):
            created = requests.post(worker + "/v1.41/containers/create", json=body, timeout=30)
            assert created.status_code == 201, created.text
            container = created.json()["Id"]
            assert requests.delete(f"{worker}/v1.41/containers/{container}?force=1", timeout=30).status_code == 204
    finally:
        keys_dir.rmdir()
    assert requests.delete(worker + "/v1.41/volumes/qm-proxy-test-volume", timeout=30).status_code == 204
