"""The `qm` command line, installed in the venv as a customer installs it (cli/), run as a program
against a real portal (daphne) whose instances run for real: login keeps the token in the user's
config directory (0600), instances are created with progress, listed as a table and as JSON,
followed live (logs and the events the websocket pushes), stopped, started, backed up, removed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.db import committing_db
from tests.factories import DEFAULT_PASSWORD
from tests.integrator import integrator_portal  # noqa: F401

pytestmark = committing_db

QM = str(Path(sys.executable).parent / "qm")


@pytest.fixture
def qm(integrator_portal, user, subscribe, tmp_path):  # noqa: F811
    """Run `qm` with a home of its own; returns a function (args, stdin) -> CompletedProcess."""
    subscribe(user, "professional")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QM_", "XDG_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))

    def run(*args: str, stdin: str = "", timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([QM, *args], input=stdin, env=env, capture_output=True, text=True, timeout=timeout)

    run.env = env
    run.home = home
    run.base = integrator_portal
    return run


def login(qm, user) -> None:
    done = qm("login", "--url", qm.base, "--email", user.email, "--password-stdin", stdin=DEFAULT_PASSWORD + "\n")
    assert done.returncode == 0, done.stderr


def test_login_keeps_the_token_readable_by_the_user_only(qm, user):
    refused = qm("login", "--url", qm.base, "--email", user.email, "--password-stdin", stdin="wrong\n")
    assert refused.returncode == 1 and "invalid_credentials" in refused.stderr
    login(qm, user)
    config = qm.home / ".config" / "quantmesh" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    token = json.loads(config.read_text())["token"]
    assert token.startswith("qm_")
    shown = qm("config", "get")
    assert f"url={qm.base}" in shown.stdout and "token=set" in shown.stdout and token not in shown.stdout
    assert qm("config", "get", "url").stdout.strip() == qm.base
    assert qm("config", "set", "output", "yaml").returncode == 1
    assert qm("config", "set", "output", "json").returncode == 0
    assert json.loads(qm("instances", "ls").stdout) == []  # JSON by default now
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # still, after a rewrite


def test_instance_lifecycle_from_the_command_line(qm, user):
    login(qm, user)
    created = qm("instances", "create", "--plan", "professional", "--json")
    assert created.returncode == 0, created.stderr
    instance = json.loads(created.stdout)
    instance_id = instance["instance_id"]
    assert instance["status"] == "running"
    # Progress while it comes up: its events as they happen, on stderr.
    progress = created.stderr.splitlines()
    assert progress[0].startswith(f"{instance_id}: created → provisioning"), progress
    assert any(line.startswith(f"{instance_id}: running → running") for line in progress), progress

    table = qm("instances", "ls").stdout.splitlines()
    assert table[0].split() == ["INSTANCE_ID", "STATUS", "PLAN", "URL", "CREATED_AT"]
    assert table[1].split()[:3] == [instance_id, "running", "professional"]
    assert [i["instance_id"] for i in json.loads(qm("instances", "ls", "--json").stdout)] == [instance_id]
    assert qm("instances", "logs", instance_id, "-n", "20").stdout.strip()

    # logs -f: the backlog, then live messages; stopping the instance shows up as `event` messages.
    follower = subprocess.Popen(
        [QM, "instances", "logs", "-f", instance_id, "--json"], env=qm.env, stdout=subprocess.PIPE, text=True
    )
    messages: list[dict] = []
    reader = threading.Thread(target=lambda: messages.extend(json.loads(line) for line in follower.stdout))
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any(m["type"] == "logs" for m in messages) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(m["type"] == "logs" for m in messages), messages
        stopped = qm("instances", "stop", instance_id, "--json")
        assert json.loads(stopped.stdout)["status"] == "stopped", stopped.stderr
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "stopped" not in {
            m["event"]["kind"] for m in messages if m["type"] == "event"
        }:
            time.sleep(0.1)
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        reader.join(timeout=10)
    events = [m["event"] for m in messages if m["type"] == "event"]
    assert [e["kind"] for e in events][:2] == ["stop_requested", "stopped"], messages
    assert all(e["instance_id"] == instance_id and e["id"] for e in events)

    assert json.loads(qm("instances", "start", instance_id, "--json").stdout)["status"] == "running"
    backup = qm("backups", "create", instance_id, "--json")
    assert backup.returncode == 0, backup.stderr
    backup_id = json.loads(backup.stdout)["backup_id"]
    listed = qm("backups", "ls", instance_id).stdout
    assert backup_id in listed and "ok" in listed

    missing = qm("instances", "stop", "qm-nothing-1")
    assert missing.returncode == 1 and missing.stderr.startswith("error: not_found:")

    removed = qm("instances", "rm", instance_id, "--json")
    assert json.loads(removed.stdout)["status"] == "deleted", removed.stderr
    assert qm("instances", "ls").stdout.strip() == "(none)"
    history = json.loads(qm("instances", "events", "--json").stdout)
    kinds = [e["kind"] for e in history]
    assert kinds[0] == "deleted" and {"created", "backup_created", "start_requested", "stopped"} <= set(kinds)
