"""The production stack's monitoring, checked with the real tools: promtool, docker-compose, a real
Prometheus scraping a real portal and real engines, and the per-customer filter Grafana queries."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import promql_parser
import pytest
import yaml
from django.conf import settings

from instances import services as instance_services
from tests.conftest import require_service
from tests.db import committing_db
from tests.live_server import free_port, live_portal
from tests.waiting import wait_for

DEPLOY = Path(settings.BASE_DIR) / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
# The dashboards on the portal's own metrics; infrastructure.json reads the exporters (test_stack.py).
PORTAL_DASHBOARDS = [path for path in DASHBOARDS if path.name != "infrastructure.json"]


def _tool(name: str) -> str:
    path = shutil.which(name)
    require_service(path is not None, f"{name} is not installed (Debian package: {name})")
    return path


def metric_names(expr: str) -> set[str]:
    names = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return names


def dashboard_exprs(paths=DASHBOARDS) -> list[str]:
    exprs = []
    for path in paths:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "quantmesh", f"{path.name}: {panel['title']}"
            exprs += [target["expr"] for target in panel["targets"]]
    return exprs


def test_prometheus_config_and_alert_rules_pass_promtool():
    promtool = _tool("promtool")
    config = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert config.returncode == 0, config.stdout + config.stderr
    rules = subprocess.run(
        [promtool, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")], capture_output=True, text=True
    )
    assert rules.returncode == 0 and "SUCCESS: 11 rules found" in rules.stdout, rules.stdout + rules.stderr


def test_compose_file_is_valid_with_the_example_environment(tmp_path):
    compose = _tool("docker-compose")
    shutil.copy(Path(settings.BASE_DIR) / "docker-compose.yml", tmp_path)
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    lines = []
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        lines.append(line + "test-value" if line.endswith("=") and not line.startswith("#") else line)
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    (tmp_path / "deploy" / "secrets" / "metrics-token").write_text("token\n")
    result = subprocess.run([compose, "config"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    stack = yaml.safe_load(result.stdout)
    assert {"postgres", "redis", "portal", "worker", "beat", "traefik", "prometheus", "grafana"} <= set(
        stack["services"]
    )
    for name, service in stack["services"].items():
        if name not in ("migrate", "engine"):  # one-shots: the migrations, the engine image's build
            assert service.get("restart") == "unless-stopped", name
    assert "ports" not in stack["services"]["grafana"] and "ports" not in stack["services"]["portal"]
    # No secret is written into the file itself: every one comes from .env.
    text = (Path(settings.BASE_DIR) / "docker-compose.yml").read_text()
    assert "test-value" not in text and "sk_live" not in text


def test_dashboards_are_valid_json_with_queries_that_parse():
    assert [p.name for p in DASHBOARDS] == ["infrastructure.json", "instances.json", "platform.json"]
    exprs = dashboard_exprs()
    assert len(exprs) >= 14
    for expr in exprs:
        promql_parser.parse(expr.replace("$instance", "x"))


def _get(url: str, headers: dict | None = None, data: dict | None = None) -> tuple[int, dict]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310 (loopback)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw.startswith(b"{") else {}
    except urllib.error.URLError:
        return 0, {}  # not listening (yet)


@pytest.fixture
def prometheus(tmp_path):
    binary = _tool("prometheus")
    port = free_port()
    processes = []

    def start(portal_base: str, token: str) -> str:
        config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        token_file = tmp_path / "metrics-token"
        token_file.write_text(token)
        portal_host = urllib.parse.urlparse(portal_base).netloc
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        config["rule_files"] = [str(DEPLOY / "prometheus" / "alerts.yml")]
        # The portal's and the engines' jobs; the exporters and Alertmanager run in test_stack.py.
        config["scrape_configs"] = [job for job in config["scrape_configs"] if "authorization" in job]
        del config["alerting"]
        for job in config["scrape_configs"]:
            job["authorization"]["credentials_file"] = str(token_file)
            for static in job.get("static_configs", []):
                static["targets"] = [portal_host]
            for sd in job.get("http_sd_configs", []):
                sd["url"] = sd["url"].replace("http://portal:8000", portal_base)
                sd["refresh_interval"] = "1s"
                sd["authorization"]["credentials_file"] = str(token_file)
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        processes.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        return f"http://127.0.0.1:{port}"

    def stop() -> None:
        while processes:
            process = processes.pop()
            process.terminate()
            process.wait(timeout=10)

    yield port, start, stop
    stop()


def _series(prometheus_url: str, query: str) -> list[dict]:
    status, body = _get(f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    return body.get("data", {}).get("result", []) if status == 200 else []


@committing_db
@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_real_prometheus_scrapes_and_each_customer_sees_only_their_own_series(
    runtime, customer, create_instance, make_user, subscribe, prometheus
):
    mine = create_instance()["instance_id"]
    other = make_user()
    subscribe(other, "professional")
    theirs = instance_services.instance_create(owner=other, plan_code="professional").instance_id
    staff = make_user(is_staff=True)
    port, start, stop = prometheus
    with live_portal(
        QM_METRICS_TOKEN="metrics-token",
        QM_GRAFANA_DATASOURCE_TOKEN="grafana-token",  # noqa: S106 (a test value)
        QM_PROMETHEUS_URL=f"http://127.0.0.1:{port}",
    ) as (portal, _):
        prom = start(portal, "metrics-token")
        engines = wait_for(
            lambda: len(s := _series(prom, "quantmesh_engine_up")) == 2 and s, 45, "Prometheus scrapes", 0.5
        )
        assert {(s["metric"]["instance"], s["metric"]["owner"]) for s in engines} == {
            (mine, str(customer.pk)),  # the owner's id: no personal data in Prometheus
            (theirs, str(other.pk)),
        }
        wait_for(
            lambda: _series(prom, "quantmesh_instance_memory_bytes") and _series(prom, "quantmesh_instances"),
            45,
            "the runtime and platform series",
            0.5,
        )
        # Every metric a dashboard reads exists.
        status, names = _get(f"{prom}/api/v1/label/__name__/values")
        present = set(names["data"])
        wanted = set().union(*(metric_names(e.replace("$instance", "x")) for e in dashboard_exprs(PORTAL_DASHBOARDS)))
        assert wanted <= present, wanted - present
        status, rules = _get(f"{prom}/api/v1/rules")
        assert sum(len(group["rules"]) for group in rules["data"]["groups"]) == 11

        datasource_token = "grafana-token"  # noqa: S105 (a test value)

        def tenant(user, query: str, path: str = "query", token: str | None = None):
            return _get(
                f"{portal}/internal/prometheus-tenant/api/v1/{path}",
                headers={"Authorization": f"Bearer {token or datasource_token}", "X-Grafana-User": f"user-{user.pk}"},
                data={"query": query} if path == "query" else {"match[]": query},
            )

        def instances_seen(user, query: str) -> set[str]:
            status, body = tenant(user, query)
            assert status == 200, body
            return {s["metric"].get("instance") for s in body["data"]["result"]}

        assert instances_seen(customer, "quantmesh_engine_up") == {mine}
        assert instances_seen(customer, f'quantmesh_engine_up{{owner="{other.pk}"}}') == {mine}
        assert instances_seen(customer, 'quantmesh_engine_up{owner=~".+"}') == {mine}
        assert instances_seen(
            customer, f'label_replace(quantmesh_engine_up{{owner="{other.pk}"}}, "x", "y", "", "")'
        ) == {mine}
        assert instances_seen(customer, "quantmesh_instances") == set()  # the platform's own series
        status, body = tenant(customer, "sum(quantmesh_engine_up)")
        assert float(body["data"]["result"][0]["value"][1]) == 1
        status, body = tenant(customer, "quantmesh_engine_up", path="series")
        assert {s["instance"] for s in body["data"]} == {mine}
        status, body = tenant(staff, "sum(quantmesh_engine_up)")
        assert float(body["data"]["result"][0]["value"][1]) == 2
        assert tenant(customer, "up", token="wrong")[0] == 404
        assert tenant(make_user(), "up")[0] == 200  # a customer with no instances sees nothing
        assert tenant(make_user(), "up")[1]["data"]["result"] == []
        assert tenant(customer, "quantmesh_engine_up{")[0] == 400
        stop()  # before the portal: its scrapes keep connections to daphne open


def test_grafana_identity_comes_from_the_portal_session(client, user, make_user):
    anonymous = client.get("/internal/grafana-auth", HTTP_X_FORWARDED_URI="/grafana/d/quantmesh-instances")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    client.force_login(user)
    response = client.get("/internal/grafana-auth")
    assert response.status_code == 200
    # The Grafana login is the stable user id (Grafana sends it back as X-Grafana-User); the e-mail is shown only.
    assert (response["X-WEBAUTH-USER"], response["X-WEBAUTH-ROLE"]) == (f"user-{user.pk}", "Viewer")
    assert response["X-WEBAUTH-EMAIL"] == user.email
    client.force_login(make_user(is_staff=True))
    assert client.get("/internal/grafana-auth")["X-WEBAUTH-ROLE"] == "Admin"


def test_grafana_trusts_identity_headers_from_traefik_only_and_by_user_id():
    import configparser

    ini = configparser.ConfigParser(interpolation=None)
    ini.read(DEPLOY / "grafana" / "grafana.ini")
    proxy = ini["auth.proxy"]
    assert (proxy["header_name"], proxy["header_property"]) == ("X-WEBAUTH-USER", "username")
    stack = yaml.safe_load((Path(settings.BASE_DIR) / "docker-compose.yml").read_text())
    traefik_address = stack["services"]["traefik"]["networks"]["default"]["ipv4_address"]
    assert proxy["whitelist"].split(",") == [traefik_address]
    labels = stack["services"]["grafana"]["labels"]
    forwarded = labels["traefik.http.middlewares.grafana-portal-identity.forwardauth.authResponseHeaders"]
    assert set(forwarded.split(",")) == {"X-WEBAUTH-USER", "X-WEBAUTH-EMAIL", "X-WEBAUTH-ROLE"}
