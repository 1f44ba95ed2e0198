"""EchoChat load generator: ``python -m bench <workload> --url URL [options]``.

Workloads (each in its own module): ``idle`` (server memory per idle authenticated socket),
``presence`` (latency of one user's presence change to each of B buddies) and ``dm`` (P
pairs exchanging encrypted direct messages: latency, throughput, losses; it can start its
own server with ``--spawn``). It runs in its own process and speaks the SDK's wire protocol
(raw ``websockets`` + ``httpx``, for the sake of 10,000 sockets in one process). See
docs/performance.md.
"""
