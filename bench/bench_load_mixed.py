"""Mixed load on a production-shaped portal: 1,000 registered users, 200 concurrent API clients
mixing reads and lifecycle writes for 60 s against daphne + PostgreSQL + Redis, with a real Celery
worker and the `process` runtime backend running real engines. Reports requests, req/s, the error
rate, p50/p99 (overall, reads, writes) and, once the queue has drained and one reconcile pass has
run, how many instances are not in the state they were asked for (target 0).

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth; the database `qm_bench_load`, or
BENCH_LOAD_DATABASE, is replaced by a copy of the migrated template) and Redis at 127.0.0.1:6379
(database 9, or BENCH_LOAD_REDIS_URL, flushed).
BENCH_LOAD_CLIENTS and BENCH_LOAD_SECONDS shrink it for a quick try (e.g. 20 clients, 10 s).

The Django-side steps (seeding, drain and check, engine clean-up) are functions of this module,
run in `python -c` subprocesses with Django set up against the benchmark's database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import aiohttp
import psycopg
import redis
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from bench.common import Result, percentile
from bench.portal_server import ROOT, running_portal
from instances.runtime import get_backend
from instances.runtime.base import RuntimeState
from quantmesh.crypto import encrypt

USERS = 1000
CLIENTS = int(os.environ.get("BENCH_LOAD_CLIENTS", "200"))
SECONDS = float(os.environ.get("BENCH_LOAD_SECONDS", "60"))
WRITE_SHARE = 0.1  # of the operations a client picks; the rest are reads
WRITES_PER_SECOND = 5.0  # overall cap: two worker processes converge only a few instances a second
MAX_LIVE_ENGINES = 24  # instances asked to run at once (2 CPU cores run everything here)
MAX_INSTANCES_PER_USER = 3  # the professional plan's limit
SEEDED_EVERY = 2  # every other user starts with one stopped instance, so instance pages have data
REQUEST_TIMEOUT_SECONDS = 30
DRAIN_SECONDS = 120
WORKER_CONCURRENCY = 2
WORKER_STOP_SECONDS = 30

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
# Parallel runs on one machine (several worktrees) each name their own database and Redis database.
DATABASE_NAME = os.environ.get("BENCH_LOAD_DATABASE", "qm_bench_load")
REDIS_URL = os.environ.get("BENCH_LOAD_REDIS_URL", "redis://127.0.0.1:6379/9")  # flushed: nothing else may use it
PASSWORD = "bench-load-password-123456"  # noqa: S105 (a throwaway account on loopback)

# Correct answers of the product to a request that raced another (a limit, a delete, a throttle):
# counted apart from errors. Any other 4xx means the benchmark or the product is wrong: an error.
BUSINESS_CODES = {"instance_limit_reached", "instance_deleted", "not_found", "rate_limited"}
READS = {"me": 2, "list": 3, "detail": 3, "subscriptions": 1, "logs": 1}  # op -> weight
WRITE_WEIGHTS = {"create": 3, "start": 3, "stop": 3, "restart": 1, "delete": 1}


# --- the load ---------------------------------------------------------------------------------


@dataclass
class Fleet:
    """What the clients believe: each user's token and instances (id -> "running" | "stopped")."""

    tokens: list[str]
    instances: list[dict[str, str]]
    busy: set[str] = field(default_factory=set)  # ids (and "user:<n>" for a create) with a write in flight
    live: int = 0  # instances asked to run (reserved before the call): the bound on engines


@dataclass
class Write:
    op: str
    user: int
    instance_id: str | None
    method: str
    path: str


@dataclass
class Tally:
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {"read": [], "write": []})
    outcomes: Counter = field(default_factory=Counter)  # (kind, outcome) -> count
    answers: Counter = field(default_factory=Counter)  # (kind, op, status, code) -> count, for stderr
    server_errors: Counter = field(default_factory=Counter)  # (status, start of the body) -> count, for stderr


class Pacer:
    """Lets at most `rate` writes a second through; a client refused a write does a read."""

    def __init__(self, rate: float):
        self.interval = 1 / rate
        self.next_at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        if now < self.next_at:
            return False
        self.next_at = max(self.next_at, now - 1) + self.interval  # at most a second of burst
        return True


def _pick_write(fleet: Fleet, rng: random.Random) -> Write | None:
    for _ in range(5):  # a few users, in case the first has nothing to do
        user = rng.randrange(len(fleet.tokens))
        owned = fleet.instances[user]
        room = fleet.live < MAX_LIVE_ENGINES
        options: list[Write] = []
        if room and len(owned) < MAX_INSTANCES_PER_USER and f"user:{user}" not in fleet.busy:
            options += [Write("create", user, None, "POST", "/api/saas/instances/create?wait=0")]
        for instance_id, desired in owned.items():
            if instance_id in fleet.busy:
                continue
            base = f"/api/saas/instances/{instance_id}"
            ops = {"running": ["stop", "restart"], "stopped": ["start"] if room else []}[desired]
            options += [Write(op, user, instance_id, "POST", f"{base}/{op}?wait=0") for op in ops]
            options.append(Write("delete", user, instance_id, "DELETE", f"{base}?wait=0"))
        if options:
            return rng.choices(options, weights=[WRITE_WEIGHTS[w.op] for w in options])[0]
    return None


def _pick_read(fleet: Fleet, rng: random.Random) -> tuple[str, int, str]:
    user = rng.randrange(len(fleet.tokens))
    owned = list(fleet.instances[user])
    ops = [op for op in READS if owned or op not in ("detail", "logs")]
    op = rng.choices(ops, weights=[READS[o] for o in ops])[0]
    instance_id = rng.choice(owned) if owned else ""
    path = {
        "me": "/api/auth/me",
        "list": "/api/saas/instances",
        "subscriptions": "/api/billing/subscriptions",
        "detail": f"/api/saas/instances/{instance_id}",
        "logs": f"/api/saas/instances/{instance_id}/logs?lines=20",
    }[op]
    return op, user, path


async def _call(session, base: str, method: str, path: str, token: str) -> tuple[int | None, bytes, float, str]:
    """(status or None, body, latency in ms, what went wrong for a connection error or timeout)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = json.dumps({"plan": "personal"}) if path.startswith("/api/saas/instances/create") else None
    started = time.perf_counter()
    try:
        async with session.request(method, base + path, headers=headers, data=body) as response:
            payload = await response.read()
            return response.status, payload, (time.perf_counter() - started) * 1000, ""
    except (aiohttp.ClientError, TimeoutError) as exc:
        return None, b"", (time.perf_counter() - started) * 1000, type(exc).__name__


def _error_code(payload: bytes) -> str:
    try:
        return json.loads(payload)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return ""


def _record(tally: Tally, kind: str, op: str, status: int | None, payload: bytes, ms: float, failure: str) -> str:
    """Classify one answer as ok / business / error. Latencies are those of the answers served
    (ok and business): a fast 503 would otherwise pull the percentiles down."""
    code = _error_code(payload) if status is not None and status >= 400 else ""
    if status is None:
        outcome = "error"
    elif status < 400:
        outcome = "ok"
    elif status < 500 and code in BUSINESS_CODES:
        outcome = "business"
    else:
        outcome = "error"
    if outcome != "error":
        tally.latencies_ms[kind].append(ms)
    if status is not None and status >= 500:
        tally.server_errors[status, payload[:300]] += 1
    tally.outcomes[kind, outcome] += 1
    tally.answers[kind, op, status if status is not None else failure, code] += 1
    return outcome


async def _write(session, base: str, fleet: Fleet, tally: Tally, write: Write) -> None:
    owned = fleet.instances[write.user]
    was_running = write.instance_id is not None and owned.get(write.instance_id) == "running"
    reserves = write.op in ("create", "start")  # an engine more, counted before the call
    key = write.instance_id or f"user:{write.user}"
    fleet.busy.add(key)
    if reserves:
        fleet.live += 1
    try:
        status, payload, ms, failure = await _call(session, base, write.method, write.path, fleet.tokens[write.user])
        outcome = _record(tally, "write", write.op, status, payload, ms, failure)
    finally:
        fleet.busy.discard(key)
    if outcome == "ok":
        if write.op == "create":
            owned[json.loads(payload)["instance_id"]] = "running"
        elif write.op in ("start", "restart"):
            owned[write.instance_id] = "running"
        elif write.op == "stop":
            owned[write.instance_id] = "stopped"
            fleet.live -= 1
        elif write.op == "delete":
            del owned[write.instance_id]
            fleet.live -= was_running
    elif outcome == "business":
        if reserves:
            fleet.live -= 1
        if _error_code(payload) in ("instance_deleted", "not_found") and write.instance_id:
            owned.pop(write.instance_id, None)  # it is gone (or going): stop using it
            fleet.live -= was_running
    # An error leaves everything as it was, reservations included: the call may have taken effect.


async def _read(session, base: str, fleet: Fleet, tally: Tally, rng: random.Random) -> None:
    op, user, path = _pick_read(fleet, rng)
    status, payload, ms, failure = await _call(session, base, "GET", path, fleet.tokens[user])
    _record(tally, "read", op, status, payload, ms, failure)


class Sampler(threading.Thread):
    """Once a second through the load and the drain: the engines alive under our process root and
    the PostgreSQL connections (to our database, and the server's total against max_connections,
    which other work on this machine shares). The peaks show whether the bounds held."""

    def __init__(self, process_root: Path):
        super().__init__(daemon=True)
        self.process_root = process_root
        self.db = psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True)
        self.max_connections = int(self.db.execute("SHOW max_connections").fetchone()[0])
        self.peak_engines = self.peak_connections = self.peak_server_connections = 0
        self.done = threading.Event()

    def run(self) -> None:
        query = (
            "SELECT count(*) FILTER (WHERE datname = %s), count(*) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend'"
        )
        while not self.done.wait(1):
            self.peak_engines = max(self.peak_engines, len(_live_supervisors(self.process_root)))
            with contextlib.suppress(Exception):  # a missed sample is no reason to stop the benchmark
                ours, total = self.db.execute(query, [DATABASE_NAME]).fetchone()
                self.peak_connections = max(self.peak_connections, ours)
                self.peak_server_connections = max(self.peak_server_connections, total)

    def stop(self) -> None:
        self.done.set()
        if self.is_alive():
            self.join()
        self.db.close()


async def _load(base: str, fleet: Fleet) -> tuple[Tally, float]:
    tally, pacer = Tally(), Pacer(WRITES_PER_SECOND)
    stop_at = time.monotonic() + SECONDS
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop_at:
                write = _pick_write(fleet, rng) if rng.random() < WRITE_SHARE and pacer.take() else None
                if write is not None:
                    await _write(session, base, fleet, tally, write)
                else:
                    await _read(session, base, fleet, tally, rng)

        started = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(CLIENTS)))
        elapsed = time.monotonic() - started
    return tally, elapsed


# --- Django-side steps (run in a subprocess with Django set up) --------------------------------


def seed_users(count: int, seeded_every: int) -> None:
    """`count` verified users on the professional plan, each with an API token; every
    `seeded_every`-th user has one stopped instance. Prints {"users": [{"token", "instances"}]}."""
    # Inline: models load only once Django is set up, in the subprocess; the load side runs without it.
    from allauth.account.models import EmailAddress

    from accounts.models import User
    from accounts.services import api_token_create
    from billing.selectors import plan_get
    from billing.services import subscription_grant_local
    from instances.models import Instance

    # Shaped like tests.factories.UserFactory (verified e-mail), in bulk: hashing the password
    # once (PBKDF2 costs ~0.3 s a hash) instead of 1,000 times.
    password = make_password(PASSWORD)
    users = User.objects.bulk_create(
        [User(email=f"load{n:04d}@bench.example", password=password) for n in range(count)]
    )
    EmailAddress.objects.bulk_create(
        [EmailAddress(user=user, email=user.email, verified=True, primary=True) for user in users]
    )
    professional, personal = plan_get(code="professional"), plan_get(code="personal")
    tokens = []
    for user in users:
        subscription_grant_local(user=user, plan=professional)
        tokens.append(api_token_create(user=user, name="load bench")[1])
    # Stopped instances have no engine until started: their runtime unit is created on start.
    seeded = Instance.objects.bulk_create(
        [
            Instance(
                instance_id=f"qm-l{n:05d}-{int(time.time())}",
                slug=f"l{n:05d}",
                owner=user,
                plan=personal,
                desired_state=Instance.Desired.STOPPED,
                status=Instance.Status.STOPPED,
                image=settings.QM_ENGINE_IMAGE,
                proxy_secret_encrypted=encrypt(secrets.token_urlsafe(32)),
            )
            for n, user in enumerate(users)
            if n % seeded_every == 0
        ]
    )
    owned = {instance.owner_id: [instance.instance_id] for instance in seeded}
    print(
        json.dumps(
            {"users": [{"token": t, "instances": owned.get(u.pk, [])} for u, t in zip(users, tokens, strict=True)]}
        )
    )


def settle_and_check(drain_seconds: float) -> None:
    """After the load: wait (bounded) for the queue to drain. Instances still mid-change then have
    lost their task (say, to a database error); reconcile re-drives such work once it has been
    stuck for twice the provision timeout, so wait (bounded) until it qualifies, run one reconcile
    pass and let the converges it sends finish. Then compare every instance's status and the
    runtime's view with its desired state. Prints the figures as JSON."""
    # Inline: models load only once Django is set up, in the subprocess; the load side runs without it.
    from instances.models import Instance
    from instances.services.reconcile import TRANSITIONAL, reconcile_pass

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    stuck_after = timedelta(seconds=settings.QM_PROVISION_TIMEOUT_SECONDS * 2)  # as reconcile_pass has it

    def backlog() -> int:
        # Waiting tasks (one list per priority) plus those a worker holds (acks_late: until done).
        queued = sum(broker.llen(key) for key in broker.scan_iter("celery*") if broker.type(key) == b"list")
        return queued + broker.hlen("unacked")

    def mid_change():
        return Instance.objects.filter(status__in=TRANSITIONAL)

    def wait_for(condition, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    started = time.monotonic()
    backlog_at_end = backlog()
    drained = wait_for(lambda: backlog() == 0, drain_seconds)
    drain_seconds_taken = time.monotonic() - started

    started = time.monotonic()
    stranded = list(mid_change().values_list("instance_id", flat=True))
    wait_for(
        lambda: not mid_change().filter(status_changed_at__gt=timezone.now() - stuck_after).exists(),
        stuck_after.total_seconds() + 10,
    )
    report = reconcile_pass()
    redriven = set(report.converge_ids)
    wait_for(lambda: backlog() == 0 and not mid_change().filter(instance_id__in=redriven).exists(), drain_seconds)
    recovery_seconds = time.monotonic() - started

    runtime = get_backend().list_all()
    wrong, by_state = [], Counter()
    for instance in Instance.objects.all():
        observed = runtime.pop(instance.instance_id, None)
        state = observed.state if observed else RuntimeState.MISSING
        by_state[f"{instance.desired_state}/{instance.status}/{state.value}"] += 1
        runtime_agrees = {
            Instance.Desired.RUNNING: state == RuntimeState.RUNNING,
            Instance.Desired.STOPPED: state != RuntimeState.RUNNING,
            Instance.Desired.DELETED: observed is None,
        }[instance.desired_state]
        if instance.status != instance.desired_state or not runtime_agrees:
            wrong.append(
                f"{instance.instance_id}: desired {instance.desired_state}, status {instance.status}, "
                f"runtime {state.value}, last failure {instance.last_failure_reason!r}"
            )
    wrong += [
        f"{instance_id}: runtime {observed.state.value} with no instance" for instance_id, observed in runtime.items()
    ]
    print(
        json.dumps(
            {
                "backlog_at_end": backlog_at_end,
                "drained": drained,
                "drain_seconds": drain_seconds_taken,
                "stranded": stranded,
                "recovery_seconds": recovery_seconds,
                "reconcile": report.as_dict(),
                "instances": sum(by_state.values()),
                "by_state": by_state,
                "wrong": wrong,
            }
        )
    )


def remove_engines() -> None:
    """Stop and remove every engine the runtime knows, data included (the benchmark's own)."""
    backend = get_backend()
    for instance_id in list(backend.list_all()):
        backend.remove(instance_id, keep_data=False)


# --- orchestration ----------------------------------------------------------------------------


def _django(env: dict, function: str, *args, timeout: float = 600) -> str:
    """Call one of the functions above in a Python process with Django set up; its stdout."""
    code = f"import django; django.setup()\nfrom bench.bench_load_mixed import {function}\n{function}(*{args!r})"
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"{function} failed: {done.stderr[-2000:]}")
    return done.stdout


def _manage(env: dict, *args: str) -> None:
    command = [sys.executable, str(ROOT / "manage.py"), *args]
    subprocess.run(command, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 (keeps the table clean)


def _prepare_database(env: dict) -> None:
    """A fresh copy of the migrated template (quantmesh/dbtemplate.py), whatever an earlier run left."""
    _manage(env, "migrate_from_template", "--replace", "-v0")


def _flush_redis() -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()  # database 9 only


def _live_supervisors(process_root: Path) -> list[int]:
    """Pids of the engines' supervisors under our process root that are alive (not zombies)."""
    pids = []
    for state_file in process_root.glob("*/state.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, IndexError):
            pid = json.loads(state_file.read_text())["pid"]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            alive = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            if alive and str(state_file.parent / "exit.json").encode() in cmdline:
                pids.append(pid)
    return pids


def _start_worker(env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(  # noqa: S603
            [
                sys.executable, "-m", "celery", "-A", "quantmesh", "worker",
                "--concurrency", str(WORKER_CONCURRENCY), "--loglevel", "WARNING",
                "--without-heartbeat", "--without-mingle", "--without-gossip",
            ],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole, and only it
        )  # fmt: skip


def _stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is not None:
        return
    os.killpg(worker.pid, signal.SIGTERM)  # warm shutdown: running tasks finish
    try:
        worker.wait(timeout=WORKER_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)


def _clean_engines(env: dict, process_root: Path) -> None:
    try:
        _django(env, "remove_engines", timeout=300)
    finally:
        for pid in _live_supervisors(process_root):  # whatever the backend could not remove
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def _report_problems(tally: Tally, check: dict, worker_log: Path) -> None:
    def out(line: str) -> None:
        print(f"[load] {line}", file=sys.stderr)

    for (kind, op, status, code), count in sorted(tally.answers.items(), key=str):
        out(f"answers: {kind} {op} {status} {code}: {count}")
    for (status, body), count in tally.server_errors.most_common():
        out(f"5xx: {count} x {status} {body!r}")
    out(f"after the load: {json.dumps({k: v for k, v in check.items() if k not in ('wrong', 'stranded')})}")
    if check["stranded"]:
        out(f"mid-change once the queue drained (their task was lost): {', '.join(check['stranded'])}")
    for line in check["wrong"]:
        out(f"wrong state: {line}")
    problems = [line for line in worker_log.read_text(errors="replace").splitlines() if "ERROR" in line]
    out(f"worker log: {len(problems)} ERROR line(s)" + "".join(f"\n[load]   {p}" for p in problems[:10]))


def _latency_rows(label: str, samples: list[float]) -> list[Result]:
    if not samples:
        return []
    return [
        Result(f"mixed load: {label} p50", percentile(samples, 50), "ms"),
        Result(f"mixed load: {label} p99", percentile(samples, 99), "ms"),
    ]


def run() -> list[Result]:
    workdir = Path(tempfile.mkdtemp(prefix="qm-load-"))
    process_root = workdir / "engines"
    worker_log = workdir / "worker.log"
    env_extra = {
        "DATABASE_URL": f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{DATABASE_NAME}",
        "REDIS_URL": REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "0",  # a real worker, as production has
        "QM_RUNTIME_BACKEND": "process",
        "QM_PROCESS_ROOT": str(process_root),
    }
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "quantmesh.settings.base", "DEBUG": "0", "LOG_LEVEL": "WARNING"}
    env.update(env_extra)
    worker = sampler = None
    try:
        started = time.monotonic()
        _prepare_database(env)
        _flush_redis()
        with running_portal(env_extra) as (base, env):
            _manage(env, "load_plans", "-v0")
            portal_seconds = time.monotonic() - started
            worker = _start_worker(env, worker_log)  # boots while the users are made

            started = time.monotonic()
            seeded = json.loads(_django(env, "seed_users", USERS, SEEDED_EVERY).strip().splitlines()[-1])
            seed_seconds = time.monotonic() - started
            users = seeded["users"]
            fleet = Fleet(
                tokens=[u["token"] for u in users], instances=[dict.fromkeys(u["instances"], "stopped") for u in users]
            )
            print(f"[load] setup: portal {portal_seconds:.1f} s, {USERS} users {seed_seconds:.1f} s", file=sys.stderr)

            sampler = Sampler(process_root)
            sampler.start()
            tally, elapsed = asyncio.run(_load(base, fleet))
            check = json.loads(_django(env, "settle_and_check", DRAIN_SECONDS).strip().splitlines()[-1])
            sampler.stop()
            _stop_worker(worker)
        _report_problems(tally, check, worker_log)
    finally:
        if sampler is not None:
            sampler.stop()
        if worker is not None:
            _stop_worker(worker)
        if process_root.exists():
            _clean_engines(env, process_root)
        with contextlib.suppress(Exception):
            _flush_redis()
        shutil.rmtree(workdir, ignore_errors=True)

    reads, writes = tally.latencies_ms["read"], tally.latencies_ms["write"]
    total = sum(tally.outcomes.values())
    errors = tally.outcomes["read", "error"] + tally.outcomes["write", "error"]
    business = tally.outcomes["read", "business"] + tally.outcomes["write", "business"]
    server_errors = sum(
        n for (_, _, status, _), n in tally.answers.items() if isinstance(status, int) and status >= 500
    )
    no_answer = sum(n for (_, _, status, _), n in tally.answers.items() if isinstance(status, str))
    write_total = sum(n for (kind, _), n in tally.outcomes.items() if kind == "write")
    scale = f"{CLIENTS} clients, {SECONDS:.0f} s"
    return [
        Result(f"mixed load: requests ({scale})", total, "count"),
        Result("mixed load: throughput", total / elapsed, "req/s"),
        Result("mixed load: error rate (5xx, no answer, unexpected 4xx)", 100 * errors / max(1, total), "%", "0"),
        Result("mixed load: 5xx answers", server_errors, "count", "0"),
        Result("mixed load: connection errors and timeouts", no_answer, "count", "0"),
        Result("mixed load: 4xx business answers (limit, deleted, throttled)", business, "count"),
        Result("mixed load: lifecycle writes", write_total, "count"),
        *_latency_rows("all", reads + writes),
        *_latency_rows("reads", reads),
        *_latency_rows("writes", writes),
        Result("mixed load: peak engines alive", sampler.peak_engines, "count", f"~<= {MAX_LIVE_ENGINES}"),
        Result("mixed load: peak PostgreSQL connections, this portal", sampler.peak_connections, "count"),
        Result(
            "mixed load: peak PostgreSQL connections, whole server",
            sampler.peak_server_connections,
            "count",
            f"< {sampler.max_connections} (max_connections)",
        ),
        Result(f"mixed load: setup, {USERS} users with tokens and plans", seed_seconds, "s"),
        Result("mixed load: setup, database and portal up", portal_seconds, "s"),
        Result("mixed load: tasks queued when the load ended", check["backlog_at_end"], "count"),
        Result("mixed load: queue drain afterwards", check["drain_seconds"], "s", f"<= {DRAIN_SECONDS} s"),
        Result("mixed load: instances mid-change once the queue drained", len(check["stranded"]), "count", "0"),
        Result("mixed load: wait + reconcile pass + its converges", check["recovery_seconds"], "s"),
        Result("mixed load: instances checked afterwards", check["instances"], "count"),
        Result("mixed load: instances in a wrong state afterwards", len(check["wrong"]), "count", "0"),
    ]
