"""`factorial-ws`: the command line only builds a Config and hands it to the part that runs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from . import logs
from .config import Config, ConfigError
from .constants import QUEUES

logger = logging.getLogger("factorial_ws")


def _log_flags(*, default: object) -> argparse.ArgumentParser:
    """The flags every command takes, before or after its name."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--log-format", choices=["text", "json"], default=default, help="overrides LOG_FORMAT")
    flags.add_argument("--log-level", default=default, help="overrides LOG_LEVEL")
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factorial-ws",
        description="WebSocket gateway to Celery factorial workers.",
        parents=[_log_flags(default=None)],
    )
    # After the command name: SUPPRESS, or the subcommand's unset default would overwrite a
    # value given before the name.
    after = _log_flags(default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, parents=[after])

    up = command("up", "run Redis (unless REDIS_URL is set), workers and gateway")
    up.add_argument(
        "--replicas", type=int, help="overrides REDIS_REPLICAS: a master, N replicas and three Sentinels"
    )
    up.add_argument("--tasks", help="overrides TASKS: the catalog to serve, as module:attribute")

    serve = command("serve", "run the gateway only")
    serve.add_argument("--host", help="overrides WS_HOST")
    serve.add_argument("--port", type=int, help="overrides WS_PORT")
    serve.add_argument("--processes", type=int, help="overrides WS_PROCESSES")
    serve.add_argument("--tasks", help="overrides TASKS: the catalog to serve, as module:attribute")
    # Set by a parent gateway for its children: bind with SO_REUSEPORT.
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    worker = command("worker", "run a Celery worker")
    worker.add_argument("-Q", "--queues", default=",".join(QUEUES), help="default: soft,hard")
    worker.add_argument("-c", "--concurrency", type=int, help="pool processes (default: cores)")

    client = command("client", "send requests and print the replies")
    client.add_argument("numbers", nargs="*", type=int, metavar="NUMBER")
    client.add_argument("--url", default=None, help="default: ws://WS_HOST:WS_PORT/")
    client.add_argument("--task-id", action="append", default=[], help="look up a task id")
    client.add_argument("--token", default=None, help="default: WS_TOKEN")
    client.add_argument("--ca-file", default=None, help="CA certificate (PEM) to trust for wss://")

    bench = command("bench", "benchmark against raw Celery")
    bench.add_argument("--quick", action="store_true", help="a run of about a minute")
    bench.add_argument("--output", default="bench-results", help="folder for JSON and Markdown")
    bench.add_argument("--url", help="a running gateway to measure (with REDIS_URL set)")
    bench.add_argument("--sweep", action="store_true", help="compare worker settings instead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = Config.from_env(
            log_format=args.log_format,
            log_level=args.log_level.upper() if args.log_level else None,
            ws_host=getattr(args, "host", None),
            ws_port=getattr(args, "port", None),
            ws_processes=getattr(args, "processes", None),
            redis_replicas=getattr(args, "replicas", None),
            tasks=getattr(args, "tasks", None),
        )
        if args.command in ("serve", "up"):
            _check_catalog(config)
    except ConfigError as exc:
        print(f"factorial-ws: {exc}", file=sys.stderr)
        return 1
    logs.configure(config.log_level, config.log_format, access=config.access_log)
    return _COMMANDS[args.command](config, args)


def _check_catalog(config: Config) -> None:
    """Load the catalog once before anything starts, so a wrong one is one line and exit 1,
    not a gateway that dies in each child (CatalogError is a ConfigError)."""
    if config.tasks is not None:
        from .catalog import load_catalog

        load_catalog(config)


def _up(config: Config, args: argparse.Namespace) -> int:
    from .supervisor.up import run_up

    return run_up(config, redis_url_given=bool(os.environ.get("REDIS_URL")))


def _serve(config: Config, args: argparse.Namespace) -> int:
    from .supervisor.gateways import run_gateways

    try:
        return run_gateways(config, reuse_port=args.reuse_port)
    except OSError as exc:  # most often: the port is taken
        logger.error("cannot serve on %s:%s: %s", config.ws_host, config.ws_port, exc.strerror)
        return 1


def _worker(config: Config, args: argparse.Namespace) -> int:
    from .worker.processes import worker_command

    command = worker_command(args.queues, concurrency=args.concurrency, log_level=config.log_level)
    os.execve(sys.executable, command, {**os.environ, **config.to_env()})


def _client(config: Config, args: argparse.Namespace) -> int:
    from .client.command import ClientRun, run_client

    if not args.numbers and not args.task_id:
        print("factorial-ws client: give at least one NUMBER or --task-id", file=sys.stderr)
        return 2
    token = args.token or config.token
    run = ClientRun(
        args.url or config.public_url, tuple(args.numbers), tuple(args.task_id), token, args.ca_file
    )
    return asyncio.run(run_client(run))


def _bench(config: Config, args: argparse.Namespace) -> int:
    from .bench import run_bench, run_sweep

    if args.sweep:
        return run_sweep(config, quick=args.quick, output=args.output)
    return run_bench(config, quick=args.quick, output=args.output, url=args.url)


_COMMANDS = {
    "up": _up,
    "serve": _serve,
    "worker": _worker,
    "client": _client,
    "bench": _bench,
}
