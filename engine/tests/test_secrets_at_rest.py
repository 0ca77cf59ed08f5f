"""Exchange keys on the data volume: never in plaintext when the portal handed over run keys."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import yaml
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet
from engine_testkit import write_platform
from quantmesh_engine.app import Engine
from quantmesh_engine.web import PROXY_SECRET_HEADER, build_app

SECRET = "s3cr3t-value-5678-never-on-disk"


def volume_bytes(data_dir) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())


def test_keys_entered_on_the_config_api_are_encrypted_on_the_volume(data_dir, tmp_path):
    write_platform(data_dir, secret="ignored-volume-secret")
    keys = tmp_path / "run" / "keys.yaml"  # a tmpfs file outside the volume, in production
    keys.parent.mkdir()
    secrets_key = Fernet.generate_key().decode()
    keys.write_text(yaml.safe_dump({"proxy_secret": "run-key-proxy-secret", "secrets_key": secrets_key}))
    old = {"api_key": "OLD-KEY-1234", "secret": "old-plaintext-secret"}  # left by an engine before run keys
    (data_dir / "secrets.yaml").write_text(yaml.safe_dump(old))

    async def main():
        engine = Engine(data_dir, keys_file=keys)
        server = TestServer(build_app(engine), host="127.0.0.1")
        await server.start_server()
        try:
            headers = {PROXY_SECRET_HEADER: "run-key-proxy-secret"}
            async with aiohttp.ClientSession(headers=headers) as session:
                async with session.get(server.make_url("/api/config")) as response:
                    assert response.status == 200  # the run keys' proxy secret, not the volume's
                    assert (await response.json())["secrets"]["api_key"] == "****1234"
                body = {"config": {"exchange": {"name": "paper"}}, "secrets": {"api_key": "AK-9999", "secret": SECRET}}
                async with session.put(server.make_url("/api/config"), json=body) as response:
                    assert response.status == 200
            return engine.secrets()
        finally:
            await engine.shutdown()
            await server.close()

    stored = asyncio.run(main())
    assert stored.secret == SECRET
    on_disk = volume_bytes(data_dir)
    assert SECRET.encode() not in on_disk and b"old-plaintext-secret" not in on_disk
    assert not (data_dir / "secrets.yaml").exists()
    encrypted = data_dir / "secrets.enc"
    assert oct(os.stat(encrypted).st_mode & 0o777) == "0o600"
    assert SECRET in Fernet(secrets_key).decrypt(encrypted.read_bytes()).decode()
