"""qm: log in, manage instances, follow their logs, list backups, from a terminal or a script.

Every command prints a table, or JSON with --json (or `qm config set output json`). Errors go to
stderr as `error: <code>: <message>` with exit status 1 (2 for usage errors)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from . import config as qm_config
from .api import Api, ApiError

INSTANCE_COLUMNS = ("instance_id", "status", "plan", "url", "created_at")
SETTLED = {"running", "stopped", "failed", "deleted"}


def _print(rows, columns, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    rows = rows if isinstance(rows, list) else [rows]
    if not rows:
        print("(none)")
        return
    cells = [["" if row.get(c) is None else str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    for line in [[c.upper() for c in columns], *cells]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def _api(settings: dict, *, authenticated: bool = True) -> Api:
    if authenticated and not settings.get("token"):
        raise ApiError(401, "not_logged_in", "run `qm login` first")
    return Api(settings["url"], settings.get("token") if authenticated else None)


def cmd_login(args, settings) -> int:
    url = args.url or settings["url"]
    email = args.email or input("E-mail: ")
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
    body = {"email": email, "password": password}
    if args.otp:
        body["otp"] = args.otp
    api = Api(url)
    try:
        answer = api.post("/api/auth/login", body)
    except ApiError as error:
        if error.code != "otp_required" or args.password_stdin:
            raise
        body["otp"] = input("Two-factor code: ")
        answer = api.post("/api/auth/login", body)
    qm_config.save({**settings, "url": url, "token": answer["token"]})
    print(f"Logged in to {url} as {email}; token kept in {qm_config.config_path()} (expires {answer['expires_at']}).")
    return 0


def _wait_until_settled(api: Api, instance: dict, timeout: float) -> dict:
    """Progress on stderr while the instance comes up: each event of its feed as it happens (created,
    running, crashed with the reason...), with the time since the create."""
    started = time.monotonic()
    path = f"/api/saas/instances/{instance['instance_id']}"
    seen: set[int] = set()
    while True:
        for event in reversed(api.get(f"{path}/events", limit=50)):
            if event["id"] not in seen:
                seen.add(event["id"])
                reason = f" ({event['detail']['reason']})" if event["detail"].get("reason") else ""
                print(
                    f"{instance['instance_id']}: {event['kind']} → {event['to_status']}{reason}"
                    f" [{time.monotonic() - started:.0f} s]",
                    file=sys.stderr,
                    flush=True,
                )
        if instance["status"] in SETTLED and instance["desired_state"] in (instance["status"], "deleted"):
            return instance
        if time.monotonic() - started > timeout:
            late = f"{instance['instance_id']} is still {instance['status']} after {timeout:.0f} s"
            raise ApiError(0, "timeout", late)
        time.sleep(1)
        instance = api.get(path)


def cmd_instances(args, settings) -> int:
    api = _api(settings)
    path = f"/api/saas/instances/{getattr(args, 'instance_id', '')}"
    if args.action == "ls":
        _print(api.get_all("/api/saas/instances"), INSTANCE_COLUMNS, args.json)
    elif args.action == "create":
        instance = api.post("/api/saas/instances/create", {"plan": args.plan}, wait=0)
        if not args.no_wait:
            instance = _wait_until_settled(api, instance, args.timeout)
        _print(instance, INSTANCE_COLUMNS, args.json)
        return 0 if instance["status"] != "failed" else 1
    elif args.action in ("stop", "start", "restart"):
        _print(api.post(f"{path}/{args.action}"), INSTANCE_COLUMNS, args.json)
    elif args.action == "rm":
        _print(api.delete(path), INSTANCE_COLUMNS, args.json)
    elif args.action == "events":
        events = api.get_all(f"{path}/events") if args.instance_id else api.get_all("/api/saas/events")
        _print(events, ("created_at", "instance_id", "kind", "to_status", "actor", "detail"), args.json)
    elif args.action == "logs":
        return _logs(api, args)
    return 0


def _logs(api: Api, args) -> int:
    if not args.follow:
        lines = api.get(f"/api/saas/instances/{args.instance_id}/logs", lines=args.lines)["lines"]
        print(json.dumps(lines, indent=2) if args.json else "\n".join(lines))
        return 0

    url = api.websocket_url(f"/api/saas/instances/{args.instance_id}/logs/stream?lines={args.lines}")
    try:
        with connect(url, additional_headers={"Authorization": f"Bearer {api.token}"}, open_timeout=30) as socket:
            for raw in socket:
                message = json.loads(raw)
                if args.json:
                    print(json.dumps(message), flush=True)
                elif message["type"] == "logs":
                    print("\n".join(message["lines"]), flush=True)
                elif message["type"] == "gap":
                    print(f"[lines {message['from']}–{message['to']} are gone]", file=sys.stderr, flush=True)
                elif message["type"] == "event":
                    event = message["event"]
                    print(f"[{event['kind']}: {event['to_status']}]", file=sys.stderr, flush=True)
    except ConnectionClosed as closed:
        if closed.rcvd and closed.rcvd.code >= 4000:
            reasons = {4401: "not logged in", 4404: "no such instance", 4429: "rate limited", 4400: "bad request"}
            raise ApiError(closed.rcvd.code, "stream_closed", reasons.get(closed.rcvd.code, "closed")) from None
    except KeyboardInterrupt:
        pass
    return 0


def cmd_backups(args, settings) -> int:
    api = _api(settings)
    path = f"/api/saas/instances/{args.instance_id}/backups"
    columns = ("backup_id", "kind", "status", "size_bytes", "created_at")
    if args.action == "create":
        _print(api.post(path), columns, args.json)
    else:
        _print(api.get_all(path), columns, args.json)
    return 0


def cmd_config(args, settings) -> int:
    if args.action == "set":
        if args.key not in qm_config.SETTABLE:
            raise ApiError(0, "invalid_key", f"{args.key}: settable keys are {', '.join(qm_config.SETTABLE)}")
        if args.key == "output" and args.value not in ("table", "json"):
            raise ApiError(0, "invalid_value", "output: table or json")
        qm_config.save({**settings, args.key: args.value})
        return 0
    shown = {k: v for k, v in settings.items() if k != "token"}
    shown["token"] = "set" if settings.get("token") else "not set"  # never printed
    if args.key:
        if args.key not in shown:
            raise ApiError(0, "invalid_key", f"{args.key}: keys are {', '.join(shown)}")
        print(shown[args.key])
    else:
        for key, value in shown.items():
            print(f"{key}={value}")
    return 0


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=None, help="print JSON instead of a table")
    root = argparse.ArgumentParser(prog="qm", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)

    login = commands.add_parser("login", help="log in and keep a token")
    login.add_argument("--url", help="the portal's address (kept for later commands)")
    login.add_argument("--email")
    login.add_argument("--otp", help="two-factor code (or a backup code)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    login.set_defaults(run=cmd_login)

    instances = commands.add_parser("instances", help="list, create, stop, start, remove instances; logs")
    actions = instances.add_subparsers(dest="action", required=True)
    actions.add_parser("ls", parents=[common], help="list instances")
    create = actions.add_parser("create", parents=[common], help="create an instance and wait until it runs")
    create.add_argument("--plan", required=True)
    create.add_argument("--no-wait", action="store_true", help="answer at once, without waiting")
    create.add_argument("--timeout", type=float, default=180, help="seconds to wait (default 180)")
    for name in ("stop", "start", "restart", "rm"):
        actions.add_parser(name, parents=[common], help=f"{name} an instance").add_argument("instance_id")
    logs = actions.add_parser("logs", parents=[common], help="print (or follow with -f) an instance's logs")
    logs.add_argument("instance_id")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=int, default=100)
    events = actions.add_parser("events", parents=[common], help="what happened to an instance (or to all)")
    events.add_argument("instance_id", nargs="?")
    instances.set_defaults(run=cmd_instances)

    backups = commands.add_parser("backups", help="list or take backups of an instance")
    backup_actions = backups.add_subparsers(dest="action", required=True)
    for name, text in (("ls", "list an instance's backups"), ("create", "back an instance up now")):
        backup_actions.add_parser(name, parents=[common], help=text).add_argument("instance_id")
    backups.set_defaults(run=cmd_backups)

    configure = commands.add_parser("config", help="show or change qm's settings (url, output)")
    config_actions = configure.add_subparsers(dest="action", required=True)
    config_actions.add_parser("get").add_argument("key", nargs="?")
    setter = config_actions.add_parser("set")
    setter.add_argument("key")
    setter.add_argument("value")
    configure.set_defaults(run=cmd_config)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = qm_config.load()
    if getattr(args, "json", None) is None:
        args.json = settings.get("output") == "json"
    try:
        return args.run(args, settings)
    except ApiError as error:
        print(f"error: {error.code}: {error.message}", file=sys.stderr)
        if error.status == 401:
            print("hint: qm login", file=sys.stderr)
        return 1
