"""`python -m quantmesh_engine --data-dir DIR [--host H] [--port P]`"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web

from . import __version__, logs
from .app import Engine
from .logs import event
from .web import build_app

logger = logging.getLogger("quantmesh.engine")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="quantmesh_engine", description="QuantMesh grid market-making engine")
    parser.add_argument("--data-dir", type=Path, default=Path("/data"))
    parser.add_argument("--config", type=Path, default=None, help="default: DATA_DIR/config.yaml")
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 (inside its container; never published)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--insecure-no-proxy-secret",
        action="store_true",
        help="local development only: serve without platform.yaml's proxy secret",
    )
    parser.add_argument(
        "--keys-file",
        type=Path,
        default=None,
        help="the run keys from the portal (a tmpfs file or Docker secret): proxy secret and secrets key",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    args.data_dir.mkdir(parents=True, exist_ok=True)
    engine = Engine(
        args.data_dir,
        config_path=args.config,
        insecure_no_proxy_secret=args.insecure_no_proxy_secret,
        keys_file=args.keys_file,
    )
    runner = web.AppRunner(build_app(engine), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    event(
        logger,
        logging.INFO,
        "engine started",
        version=__version__,
        port=args.port,
        instance=engine.platform.instance_id if engine.platform else "local",
    )
    engine.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    event(logger, logging.INFO, "stopping (signal received)")
    await engine.shutdown()
    await runner.cleanup()


def main(argv=None) -> None:
    args = parse_args(argv)
    logs.setup(args.log_level)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
