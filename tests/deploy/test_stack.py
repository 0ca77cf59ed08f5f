"""The production stack, brought up for real with docker-compose on this machine's Docker engine and
used as a customer would, through the portal's HTTP port only.

Every image that can be built here is built offline: the portal and engine from host wheelhouses on
the debootstrap base image; PostgreSQL, Redis, Prometheus, Alertmanager, the exporters and the Docker
socket proxy from Debian's packages (deploy/offline). Traefik, Grafana and cAdvisor are packaged
nowhere reachable from here, so they are not started (their configuration is checked statically in
test_compose.py) and the test reaches the portal on a published loopback port, as Traefik would.
The networks use addresses in 198.18.0.0/15. Builds are cached by Docker between runs.

Environment: QM_STACK_PROJECT (compose project, default qmstack-test), QM_STACK_PLATFORM_SUBNET and
QM_STACK_INSTANCES_SUBNET (default 198.18.200.0/24, 198.18.201.0/24)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
import websockets
from cryptography.fernet import Fernet
from django.conf import settings

from instances.runtime.docker import LABEL, SCOPE_LABEL
from tests.billing.stripe_server import shared_stripe_server
from tests.conftest import docker_engine_answers, require_service
from tests.deploy.test_monitoring import dashboard_exprs, metric_names
from tests.live_server import free_port
from tests.waiting import wait_for

ROOT = Path(settings.BASE_DIR)
DASHBOARDS_DIR = ROOT / "deploy" / "grafana" / "dashboards"
PROJECT = os.environ.get("QM_STACK_PROJECT", "qmstack-test")
PLATFORM_SUBNET = os.environ.get("QM_STACK_PLATFORM_SUBNET", "198.18.200.0/24")
INSTANCES_SUBNET = os.environ.get("QM_STACK_INSTANCES_SUBNET", "198.18.201.0/24")
INSTANCES_NETWORK = f"{PROJECT}-instances"
ENGINE_IMAGE = f"quantmesh/engine:{PROJECT}"
COMPOSE_FILES = ["docker-compose.yml", "deploy/offline/compose.yml", "tests/deploy/compose.stack-test.yml"]
# Everything but what cannot be had here (Traefik, Grafana, cAdvisor).
SERVICES = [
    "postgres", "redis", "docker-proxy", "engine", "migrate", "portal", "worker", "beat", "pg-backup",
    "prometheus", "alertmanager", "node-exporter", "postgres-exporter", "redis-exporter",
]  # fmt: skip
PASSWORD = "Stack-test-passw0rd!"  # noqa: S105 (a test customer's)
RULES = 11  # deploy/prometheus/alerts.yml
# Bounded. The fresh database's migrations (dj-stripe's) dominate: about 8 minutes here on 2 cores
# shared with other jobs; the images come from Docker's build cache after the first run.
pytestmark = pytest.mark.timeout(2700)
UP_TIMEOUT = 1200


class TcpRelay:
    """Forwards connections from an address the containers reach (the network's gateway on this
    host) to the Stripe test server, which listens on loopback only."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]):
        self.target = target
        self.server = socket.create_server(listen)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                return
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()


def _run(args: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kwargs)  # noqa: S603
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


class Stack:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.env_file = workdir / "stack.env"
        self.mail = workdir / "mail"
        self.mail.mkdir()
        self.mail.chmod(0o777)  # the portal writes as uid 10000
        self.base = f"http://127.0.0.1:{self.port}"
        self.gateway = str(next(iter(_hosts(PLATFORM_SUBNET))))
        self.postgres_password = secrets.token_hex(16)

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        files = [arg for name in COMPOSE_FILES for arg in ("-f", name)]
        env = {
            **os.environ,
            "PATH": "/usr/bin:" + os.environ.get("PATH", ""),
            "COMPOSE_PROJECT_NAME": PROJECT,
            "QM_STACK_PORTAL_PORT": str(self.port),
            "QM_STACK_MAIL_DIR": str(self.mail),
        }
        return _run(["docker-compose", "--env-file", str(self.env_file), *files, *args], timeout=timeout, env=env)

    def write_env(self, stripe_port: int) -> None:
        token = secrets.token_hex(16)
        values = {
            # Interpolation (docker-compose.yml) and the portal's settings (env_file) in one file.
            "QM_ENV_FILE": str(self.env_file),
            "QM_METRICS_TOKEN_FILE": str(self.workdir / "metrics-token"),
            "QM_PORTAL_IMAGE": f"quantmesh/portal:{PROJECT}",
            "QM_ENGINE_IMAGE": ENGINE_IMAGE,
            "BASE_IMAGE": "quantmesh/base:bookworm",
            "QM_PLATFORM_NETWORK": f"{PROJECT}_default",
            "QM_PLATFORM_SUBNET": PLATFORM_SUBNET,
            "QM_DOCKER_NETWORK": INSTANCES_NETWORK,
            "QM_RUNTIME_SCOPE": PROJECT,
            "SECRET_KEY": secrets.token_urlsafe(48),
            "POSTGRES_PASSWORD": self.postgres_password,
            "REDIS_PASSWORD": secrets.token_hex(16),
            "ALLOWED_HOSTS": "127.0.0.1,portal,localhost",
            "QM_BASE_DOMAIN": "stack.test",
            # No TLS terminator in this test (Traefik cannot run here): plain HTTP on the portal's port.
            "SECURE_SSL_REDIRECT": "0",
            "EMAIL_URL": "filemail:////var/lib/quantmesh/mail",
            "STRIPE_SECRET_KEY": "sk_test_QuantMeshStackTest000000001",
            "STRIPE_API_HOST": f"http://{self.gateway}:{stripe_port}",
            "QM_PUBLIC_URL": self.base,
            "QM_METRICS_TOKEN": token,
            "QM_GRAFANA_DATASOURCE_TOKEN": secrets.token_hex(16),
            "QM_TRAEFIK_PROVIDER_TOKEN": secrets.token_hex(16),
            "QM_ENCRYPTION_KEYS": Fernet.generate_key().decode(),  # production refuses to start without it
            "ACME_EMAIL": "ops@stack.test",
            "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(8),
            "QM_OPERATOR_EMAIL": "ops@stack.test",
            "ALERT_SMTP_SMARTHOST": "mail.stack.test:25",
            "ALERT_SMTP_REQUIRE_TLS": "false",
        }
        self.env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
        (self.workdir / "metrics-token").write_text(token)

    def container_address(self, service: str) -> str:
        container = self.compose("ps", "-q", service).stdout.strip()
        networks = json.loads(_run(["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", container]).stdout)
        return networks[f"{PROJECT}_default"]["IPAddress"]

    def sql(self, query: str, database: str = "quantmesh") -> str:
        return self.compose(
            "exec", "-T", "postgres", "psql", "-U", "quantmesh", "-d", database, "-tAc", query
        ).stdout.strip()


def _hosts(subnet: str):
    import ipaddress

    return ipaddress.ip_network(subnet).hosts()


def _cleanup(stack: Stack) -> None:
    with contextlib.suppress(Exception):
        stack.compose("down", "-v", "--remove-orphans", timeout=300)
    # The instances this stack's worker made (labelled with its scope), their volumes, their network.
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={SCOPE_LABEL}={PROJECT}"], capture_output=True, text=True
    ).stdout.split()
    if listed:
        names = subprocess.run(
            ["docker", "inspect", "-f", f'{{{{index .Config.Labels "{LABEL}"}}}}', *listed],
            capture_output=True,
            text=True,
        ).stdout.split()
        subprocess.run(["docker", "rm", "-f", *listed], capture_output=True)
        subprocess.run(["docker", "volume", "rm", *(f"quantmesh-{name}-data" for name in names)], capture_output=True)
    subprocess.run(["docker", "network", "rm", INSTANCES_NETWORK], capture_output=True)


class Customer:
    """A visitor of the portal's HTTP port: the web sign-up, then the API with a bearer token."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.web = requests.Session()
        self.token = ""

    def _insecure_cookies(self) -> None:
        # Production cookies are Secure; this test speaks plain HTTP to the portal (no Traefik here).
        for cookie in self.web.cookies:
            cookie.secure = False

    def form(self, path: str, data: dict) -> requests.Response:
        page = self.web.get(self.stack.base + path, timeout=30)
        assert page.status_code == 200, (path, page.status_code)
        self._insecure_cookies()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = self.web.post(
            self.stack.base + path, data={**data, "csrfmiddlewaretoken": token}, timeout=30, allow_redirects=False
        )
        self._insecure_cookies()
        return response

    def api(self, method: str, path: str, body: dict | None = None, expect: int | tuple = (200, 201, 202)):
        response = requests.request(
            method,
            self.stack.base + path,
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=120,
        )
        expected = expect if isinstance(expect, tuple) else (expect,)
        assert response.status_code in expected, (method, path, response.status_code, response.text[:2000])
        return response.json() if response.content else None


def _confirmation_path(mail: Path, email: str) -> str:
    for message in sorted(mail.glob("*.log")):
        text = message.read_text()
        if email in text and (found := re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^\s]+/)", text)):
            return found.group(1)
    return ""


def _ready(stack: Stack) -> bool:
    try:
        return requests.get(stack.base + "/readyz", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False  # not listening yet


def _prometheus(stack: Stack, path: str) -> dict:
    address = stack.container_address("prometheus")
    return requests.get(f"http://{address}:9090{path}", timeout=10).json()["data"]


async def _live_log_lines(stack: Stack, token: str, instance_id: str) -> list[dict]:
    url = stack.base.replace("http://", "ws://") + f"/api/saas/instances/{instance_id}/logs/stream?lines=5"
    messages: list[dict] = []
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(m.get("lines") for m in messages):
            with contextlib.suppress(TimeoutError):
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic())))
    return messages


def _subscribe(customer: Customer, stack: Stack, stripe) -> None:
    """Stripe Checkout as the billing tests drive it: the API starts it, the card is charged, Stripe's
    signed webhooks reach the portal's real endpoint."""
    customer.api("POST", "/api/billing/subscriptions/create", {"plan": "professional", "interval": "month"})
    session = next(o for o in stripe.objects.values() if o.get("object") == "checkout.session")
    price = next(o for o in stripe.objects.values() if o.get("lookup_key") == "qm_professional_month")
    subscription = stripe.subscription(customer=session["customer"], price=price)
    session.update(status="complete", payment_status="paid", subscription=subscription["id"])
    secret, uuid = stack.sql("SELECT secret || ' ' || djstripe_uuid FROM djstripe_webhookendpoint").split()
    for event in (
        stripe.event("checkout.session.completed", session),
        stripe.event("customer.subscription.created", subscription),
    ):
        body = json.dumps(event).encode()
        response = requests.post(
            f"{stack.base}/stripe/webhook/{uuid}/",
            data=body,
            headers={"Content-Type": "application/json", "Stripe-Signature": stripe.signature(body, secret)},
            timeout=30,
        )
        assert response.status_code == 200, response.text[:1000]


def _row_counts(stack: Stack, database: str = "quantmesh") -> dict[str, int]:
    tables = ["accounts_user", "instances_instance", "instances_instanceevent", "backups_backup", "billing_plan"]
    return {table: int(stack.sql(f"SELECT count(*) FROM {table}", database)) for table in tables}  # noqa: S608


@pytest.fixture(scope="module")
def stack():
    require_service(docker_engine_answers(), "no Docker engine answers (deploy/scripts/docker-up.sh starts one)")
    require_service(shutil.which("docker-compose") is not None, "docker-compose is not installed (Debian package)")
    base = subprocess.run(["docker", "image", "inspect", "quantmesh/base:bookworm"], capture_output=True)
    require_service(base.returncode == 0, "quantmesh/base:bookworm is missing (deploy/base-image/build.sh)")
    timings: dict[str, float] = {}
    started = time.monotonic()
    _run(["bash", "deploy/build-wheels.sh"], timeout=900)
    _run(["docker", "build", "--network=host", "-q", "-t", "quantmesh/offline:bookworm", "deploy/offline"])
    timings["wheels and offline image"] = time.monotonic() - started
    # A directory of the project's own (var/), kept until the next run: its env file lets an operator
    # inspect or tear down a stack kept with QM_KEEP_STACK=1.
    workdir = ROOT / "var" / "stack-test" / PROJECT
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    stack = Stack(workdir)
    stripe = shared_stripe_server()
    stripe.reset()
    stripe_port = free_port()
    stack.write_env(stripe_port)
    _cleanup(stack)  # what a run killed before its teardown left
    _run(["docker", "network", "create", "--subnet", INSTANCES_SUBNET, INSTANCES_NETWORK])
    # Engines' run keys: the worker (uid 10000) writes them on the host's tmpfs (`make deploy` makes it).
    _run(["install", "-d", "-m", "0700", "-o", "10000", "-g", "10000", "/dev/shm/quantmesh-keys"])
    relay = None
    try:
        step = time.monotonic()
        stack.compose("build", *[s for s in SERVICES if s in ("engine", "portal")], timeout=900)
        timings["image builds"] = time.monotonic() - step
        step = time.monotonic()
        stack.compose("up", "-d", *SERVICES, timeout=UP_TIMEOUT)
        timings["up"] = time.monotonic() - step
        relay = TcpRelay((stack.gateway, stripe_port), ("127.0.0.1", urllib.parse.urlparse(stripe.url).port))
        wait_for(lambda: _ready(stack), 120, "the portal is ready", 1)
        stack.compose(
            "exec", "-T", "portal", "python", "manage.py", "billing_stripe_sync", "--webhook-base-url", stack.base
        )
        stack.timings = timings
        stack.started = started
        stack.stripe = stripe
        yield stack
    finally:
        if relay:
            relay.close()
        if not os.environ.get("QM_KEEP_STACK"):
            _cleanup(stack)


def _running_and_healthy(customer: Customer, instance_id: str) -> bool:
    instance = customer.api("GET", f"/api/saas/instances/{instance_id}")
    return instance["status"] == "running" and instance["healthy"] is True


def test_the_stack_serves_customers_end_to_end_and_survives_down_and_up(stack):
    timings = stack.timings
    # Liveness and readiness, from outside.
    assert requests.get(stack.base + "/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(stack.base + "/readyz", timeout=5).json()
    assert ready["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}

    # Sign up (the web form: the API has no sign-up), confirm the e-mail, log in through the API.
    customer = Customer(stack)
    email = f"stack-{secrets.token_hex(4)}@example.com"
    signup = customer.form("/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})
    assert signup.status_code == 302, signup.text[:2000]
    confirm = wait_for(lambda: _confirmation_path(stack.mail, email), 30, "the confirmation e-mail", 0.5)
    assert customer.form(confirm, {}).status_code == 302
    customer.token = customer.api("POST", "/api/auth/login", {"email": email, "password": PASSWORD})["token"]

    # Subscribe (Stripe Checkout and its webhooks), then create an instance on the docker backend.
    _subscribe(customer, stack, stack.stripe)
    assert customer.api("GET", "/api/billing/subscriptions")["plan"] == "professional"
    step = time.monotonic()
    created = requests.post(
        stack.base + "/api/saas/instances/create",
        json={"plan": "professional"},
        headers={"Authorization": f"Bearer {customer.token}"},
        timeout=120,
    )
    timings["create to running"] = time.monotonic() - step
    assert created.status_code == 201, created.text[:2000]
    instance, create_request_id = created.json(), created.headers["X-Request-ID"]
    timings["from nothing built to a created instance"] = time.monotonic() - stack.started
    assert instance["status"] == "running", instance
    instance_id = instance["instance_id"]
    wait_for(lambda: customer.api("GET", f"/api/saas/instances/{instance_id}")["healthy"] is True, 60, "healthy", 1)
    engines = _run(["docker", "ps", "-q", "--filter", f"label={LABEL}={instance_id}"]).stdout.split()
    assert len(engines) == 1  # a real container, started by the worker through the socket proxy

    # Logs and live logs (the portal reads them through the proxy's read-only port).
    logs = customer.api("GET", f"/api/saas/instances/{instance_id}/logs")
    assert logs["lines"], logs
    live = asyncio.run(_live_log_lines(stack, customer.token, instance_id))
    assert any(message.get("lines") for message in live), live

    # A backup, restored into the same instance, which comes back healthy.
    backup = customer.api("POST", f"/api/saas/instances/{instance_id}/backups")
    assert backup["status"] == "ok", backup
    customer.api("POST", f"/api/saas/instances/{instance_id}/backups/{backup['backup_id']}/restore", {"into": "same"})
    wait_for(lambda: _running_and_healthy(customer, instance_id), 90, "the restored instance is healthy", 1)

    # Prometheus scrapes the instance (discovered through the portal) and the platform's exporters,
    # with the rules loaded and Alertmanager wired.
    def targets_up() -> dict:
        active = _prometheus(stack, "/api/v1/targets?state=active")["activeTargets"]
        return {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in active}

    wanted = {"portal", "node", "postgres", "redis", "alertmanager", "prometheus"}
    wait_for(
        lambda: (
            (seen := targets_up()).get(("engines", instance_id)) == "up"
            and wanted <= {job for (job, _), health in seen.items() if health == "up"}
        ),
        120,
        "the instance and the platform's exporters among Prometheus' targets, up",
        2,
    )
    # Every series the infrastructure dashboard reads exists (cAdvisor's excepted: it cannot run here;
    # ALERTS exists only while an alert fires).
    present = set(_prometheus(stack, "/api/v1/label/__name__/values"))
    wanted_series = set().union(*(metric_names(e) for e in dashboard_exprs([DASHBOARDS_DIR / "infrastructure.json"])))
    missing = {n for n in wanted_series - present if not n.startswith("container_") and n != "ALERTS"}
    assert not missing, missing
    groups = _prometheus(stack, "/api/v1/rules")["groups"]
    assert sum(len(group["rules"]) for group in groups) == RULES
    assert _prometheus(stack, "/api/v1/alertmanagers")["activeAlertmanagers"]

    # JSON logs; the create request's id follows it into the worker's tasks.
    worker_log = [
        json.loads(line.split("| ", 1)[1])
        for line in stack.compose("logs", "--no-color", "worker").stdout.splitlines()
        if "| {" in line
    ]
    assert worker_log and all({"time", "level", "logger", "message"} <= set(entry) for entry in worker_log)
    assert any(entry.get("request_id") == create_request_id for entry in worker_log), worker_log[-20:]

    # The platform database's backup (`make backup`), restored into a scratch database.
    before = _row_counts(stack)
    stack.compose("exec", "-T", "pg-backup", "sh", "/usr/local/bin/pg-backup.sh", "once")
    dumps = stack.compose("exec", "-T", "pg-backup", "sh", "-c", "ls /var/lib/quantmesh/backups/platform").stdout
    newest = sorted(name for name in dumps.split() if name.endswith(".dump"))[-1]
    stack.compose(
        "exec", "-T", "pg-backup", "sh", "/usr/local/bin/pg-backup.sh", "restore",
        f"/var/lib/quantmesh/backups/platform/{newest}", "restore_check",
    )  # fmt: skip
    assert _row_counts(stack, "restore_check") == before
    stack.sql("DROP DATABASE restore_check", "postgres")

    # Memory of the stack at idle (the customer's engine excluded).
    containers = stack.compose("ps", "-q").stdout.split()
    stats = _run(["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *containers]).stdout
    timings["idle memory MiB"] = sum(_mebibytes(line.split()[1]) for line in stats.splitlines())

    # down and up: every instance and row is still there, and the instance still runs.
    instances_before = customer.api("GET", "/api/saas/instances")
    stack.compose("down", timeout=300)
    assert _run(["docker", "ps", "-q", "--filter", f"label={LABEL}={instance_id}"]).stdout.split() == engines
    stack.compose("up", "-d", *SERVICES, timeout=UP_TIMEOUT)
    wait_for(lambda: _ready(stack), 120, "ready again", 1)
    assert _row_counts(stack) == before
    after = customer.api("GET", "/api/saas/instances")
    assert [i["instance_id"] for i in after] == [i["instance_id"] for i in instances_before] == [instance_id]
    wait_for(lambda: _running_and_healthy(customer, instance_id), 60, "healthy after down and up", 1)
    print("stack timings:", json.dumps({k: round(v, 1) for k, v in timings.items()}))  # noqa: T201


def _mebibytes(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([KMG]?i?B)", text).groups()
    scale = {"B": 1 / 1024**2, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "kB": 1 / 1000, "MB": 1, "GB": 1024}
    return float(number) * scale[unit]
