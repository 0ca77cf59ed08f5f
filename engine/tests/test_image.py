"""The real engine image on the real Docker engine: non-root, healthy, serving, a quick clean stop.
Built by engine/build-image.sh (CI builds it before the tests)."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import time
import urllib.request

import pytest
import yaml

docker = pytest.importorskip("docker")
IMAGE = os.environ.get("QM_ENGINE_IMAGE", "quantmesh/engine:latest")


@pytest.fixture
def client():
    try:
        client = docker.from_env(timeout=10)
        client.ping()
        client.images.get(IMAGE)
    except Exception as error:  # no engine, or no image
        if os.environ.get("QM_REQUIRE_SERVICES") == "1":
            pytest.fail(f"QM_REQUIRE_SERVICES=1 but Docker or {IMAGE} is unavailable: {error}")
        pytest.skip(f"Docker or {IMAGE} unavailable: {error}")
    return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_image_runs_the_engine(client):
    port = free_port()
    volume = client.volumes.create(f"qm-test-image-{port}")
    container = client.containers.create(
        IMAGE,
        command=["--data-dir", "/data", "--host", "127.0.0.1", "--port", str(port)],
        network_mode="host",
        init=True,
        volumes={volume.name: {"bind": "/data", "mode": "rw"}},
    )
    platform = yaml.safe_dump(
        {"instance_id": "qm-image1-1700000000", "proxy_secret": "image-test-secret", "max_trading_pairs": 1}
    ).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("platform.yaml")
        info.size, info.mode, info.uid, info.gid = len(platform), 0o600, 10001, 10001
        archive.addfile(info, io.BytesIO(platform))
    container.put_archive("/data", buffer.getvalue())
    try:
        started = time.monotonic()
        container.start()
        healthy_after = None
        while time.monotonic() - started < 20:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    if response.status == 200:
                        healthy_after = time.monotonic() - started
                        break
            except OSError:
                time.sleep(0.05)
        assert healthy_after is not None, container.logs().decode()[-2000:]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/status", headers={"X-QuantMesh-Proxy-Secret": "image-test-secret"}
        )
        with urllib.request.urlopen(request, timeout=2) as response:
            assert json.loads(response.read())["instance_id"] == "qm-image1-1700000000"
        assert container.exec_run("id -u").output.strip() == b"10001"
        assert container.exec_run("python -m quantmesh_engine.healthcheck").exit_code == 0
        stop_started = time.monotonic()
        container.stop(timeout=10)
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0
        assert time.monotonic() - stop_started < 5
        assert "engine stopped" in container.logs().decode()
    finally:
        container.remove(force=True)
        volume.remove(force=True)
