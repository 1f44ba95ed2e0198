"""EchoChat load generator: ``python -m bench <workload> --url URL [options]``.

Workloads (each in its own module): ``idle`` (server memory per idle authenticated socket)
and ``presence`` (latency of one user's presence change to each of B buddies). It runs in
its own process and speaks the SDK's wire protocol (raw ``websockets`` + ``httpx``, for the
sake of 10,000 sockets in one process). See docs/performance.md.
"""
