"""Command line of the load generator (``python -m bench`` or ``python bench/run.py``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import dm, fanout, idle, presence
from bench.common import Users, install_uvloop, raise_open_files_limit, say

WORKLOADS = {idle.NAME: idle, presence.NAME: presence, dm.NAME: dm, fanout.NAME: fanout}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m bench", description="EchoChat load generator (prints a table)."
    )
    sub = top.add_subparsers(dest="workload", required=True)
    for name, module in WORKLOADS.items():
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        spawns = getattr(module, "SPAWNS", False)  # may start its own server instead
        p.add_argument(
            "--url", required=not spawns, help="server base URL, e.g. http://127.0.0.1:8000"
        )
        p.add_argument(
            "--users-file",
            type=Path,
            help="JSON cache of the bench accounts and their refresh tokens (mode 0600)",
        )
        p.add_argument("--prefix", default=f"bench{name[0]}", help="username prefix")
        p.add_argument(
            "--http-concurrency",
            type=int,
            default=6,
            help="registrations/refreshes in flight (argon2 runs in the server's threads)",
        )
        p.add_argument(
            "--refresh-all",
            action="store_true",
            help="renew every cached session (POST /auth/refresh) even if its token is fresh",
        )
        p.add_argument("--no-uvloop", action="store_true", help="plain asyncio event loop")
        module.add_arguments(p)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    soft, hard = raise_open_files_limit()
    loop_name = install_uvloop(not args.no_uvloop)
    module = WORKLOADS[args.workload]
    say(
        f"bench {args.workload}: {args.url}; open files {soft}/{hard}; {loop_name}; "
        f"Python {platform.python_version()}; {os.cpu_count()} CPUs"
    )
    # A workload that may start its own server makes its own Users once it knows the URL.
    users = None if getattr(module, "SPAWNS", False) else Users(args.url, args.users_file)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    report = asyncio.run(module.run(args, users))
    print(f"{report}\n\n(started {started})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
