"""CPU per DM of the server's DM path, without sockets: ``python -m bench.dm_core``.

The full ``dm`` workload measures what a user sees, but on a shared machine its CPU per
DM moves with the load (a busier machine makes larger group commits, which cost less per
message). This one holds the batch size fixed, so two versions of the code can be compared
on a busy machine: an app on SQLite in a temporary data dir runs in this process (no
server, no sockets: no frames parsed or written, no hub), P pairs of real accounts with
published devices, real sealed envelopes; each round queues, all at once, one ``dm.send``
per pair (:func:`echochat.services.dm.send`) and the recipients' ``dm.delivered`` of the
previous round's messages (:func:`~echochat.services.dm.acknowledge`): one group commit of
P messages and P receipts, as the ``dm`` workload's server sees them. The events go to the
in-process bus (nobody subscribed). It reports the CPU time per DM (its receipt included):
the whole process (``time.process_time``: the event loop and the SQLite threads) and the
event loop's thread alone (``time.thread_time``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from bench.common import Users, install_uvloop, table
from bench.dm import Pair, publish
from echochat.app import create_app
from echochat.client.e2ee import dm_conversation, encode_payload, seal
from echochat.config import load_settings
from echochat.services import accounts, dm


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.dm_core", description=__doc__)
    parser.add_argument("-p", "--pairs", type=int, default=20, help="pairs = DMs per batch")
    parser.add_argument("--rounds", type=int, default=200, help="batches measured")
    parser.add_argument("--warmup", type=int, default=20, help="batches before measuring")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs (median shown)")
    parser.add_argument("--no-uvloop", action="store_true")
    return parser


async def main(args: argparse.Namespace) -> str:
    data = Path(tempfile.mkdtemp(prefix="echochat-bench-dmcore-"))
    settings = load_settings(
        environ={},
        overrides={
            "data_dir": data,
            "rate_limit_dm_account": "1000000/10seconds",
            "rate_limit_register_ip": "1000000/hour",
            "log_level": "warning",
        },
        config_file=None,
    ).settings
    app = create_app(settings)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url=settings.public_url
        ) as http,
    ):
        ctx = app.state.ctx
        names = [f"c{i:03d}{role}" for i in range(args.pairs) for role in "sr"]
        accounts_ = await Users(settings.public_url, None).ensure(http, names, 4, margin=900)
        by_name = {a.username: a for a in accounts_}
        keys = {a.username: await publish(http, a) for a in accounts_}
        pairs = [
            Pair(i, by_name[names[2 * i]], by_name[names[2 * i + 1]]) for i in range(args.pairs)
        ]
        principal = {
            a.username: await accounts.authenticate(ctx, a.access_token) for a in accounts_
        }
        total = args.warmup + args.rounds * args.repeat + 1
        envelopes: list[list[dict[str, Any]]] = []
        for pair in pairs:
            s, r = pair.sender.username, pair.recipient.username
            s_dev, r_dev = keys[s][1], keys[r][1]
            recipients = [
                (s, s_dev.device_id, s_dev.x25519_public),
                (r, r_dev.device_id, r_dev.x25519_public),
            ]
            envelopes.append(
                [
                    seal(
                        encode_payload({"type": "text", "text": f"{k:08d} {'x' * 48}"}),
                        conv=dm_conversation(s, r),
                        sender=s,
                        sender_device_keys=s_dev,
                        client_id=f"k{k}",
                        recipients=recipients,
                    )
                    for k in range(total)
                ]
            )
        last: list[int] = [0] * len(pairs)
        k = 0

        async def batch() -> None:
            nonlocal k
            calls: list[Any] = []
            for i, pair in enumerate(pairs):
                s, r = pair.sender.username, pair.recipient.username
                calls.append(dm.send(ctx, principal[s], r, envelopes[i][k]))
                if last[i]:
                    calls.append(dm.acknowledge(ctx, principal[r], s, "delivered", last[i]))
            results = await asyncio.gather(*calls)
            for i, result in enumerate(r for r in results if isinstance(r, dm.Sent)):
                last[i] = result.message.id
            k += 1

        for _ in range(args.warmup):
            await batch()
        runs: list[tuple[float, float, float]] = []
        for _ in range(args.repeat):
            wall, cpu, loop = time.perf_counter(), time.process_time(), time.thread_time()
            for _ in range(args.rounds):
                await batch()
            count = args.rounds * len(pairs)
            runs.append(
                (
                    (time.process_time() - cpu) * 1e3 / count,
                    (time.thread_time() - loop) * 1e3 / count,
                    (time.perf_counter() - wall) * 1e3 / args.rounds,
                )
            )
    rows = [
        ("DMs per batch (each with a receipt of the previous one)", f"{args.pairs}"),
        ("batches measured per run", f"{args.rounds}"),
        ("runs", f"{args.repeat}"),
        (
            "CPU ms per DM, whole process (median; all runs)",
            f"{statistics.median(r[0] for r in runs):.3f}; "
            + ", ".join(f"{r[0]:.3f}" for r in runs),
        ),
        (
            "CPU ms per DM, event loop thread (median; all runs)",
            f"{statistics.median(r[1] for r in runs):.3f}; "
            + ", ".join(f"{r[1]:.3f}" for r in runs),
        ),
        ("wall ms per batch (median)", f"{statistics.median(r[2] for r in runs):.2f}"),
    ]
    return table("dm_core: the server's DM path, CPU per DM", rows)


if __name__ == "__main__":
    arguments = parser().parse_args()
    install_uvloop(not arguments.no_uvloop)
    print(asyncio.run(main(arguments)))
