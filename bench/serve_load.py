"""Load test of ``bertfit serve`` on loopback: many concurrent clients, one MRPC pair a request.

Starts ``bertfit serve EXPORT`` on a free 127.0.0.1 port, waits for ``/health``, then runs
``--clients`` concurrent clients (asyncio + httpx, one connection each) that together send
``--requests`` ``POST /predict`` requests, each one MRPC dev pair, cycling through the dev set;
with ``--explain-fraction F`` that share of the requests (evenly spread) goes to ``POST /explain``
instead (word occlusion: one batched model call over the pair with each word masked).
The run is bounded: it stops after ``--time-limit`` seconds even if requests remain (they are
then counted as not sent). Reports requests/s, latency p50/p99 and failed requests (any
non-200 answer or transport error), overall and per route, prints them and writes
``bench/results/serve_load.json``::

    .venv/bin/python bench/serve_load.py bench/results/exports/bertfit-int8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(export_dir: str, port: int, extra: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "bertfit", "serve", export_dir, "--port", str(port), *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_healthy(server: subprocess.Popen, url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited:\n{server.stderr.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become healthy in time")


def route_of(index: int, explain_fraction: float) -> str:
    """``/explain`` for an evenly spread ``explain_fraction`` of the requests, else ``/predict``."""
    explains = int((index + 1) * explain_fraction) > int(index * explain_fraction)
    return "/explain" if explains else "/predict"


async def client(url, instances, counter, deadline, latencies, failures) -> None:
    answers = {"/predict": "predictions", "/explain": "explanations"}
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
        while time.monotonic() < deadline:
            index = counter["next"]
            if index >= counter["total"]:
                return
            counter["next"] += 1
            route = route_of(index, counter["explain_fraction"])
            body = {"instances": [instances[index % len(instances)]]}
            start = time.perf_counter()
            try:
                response = await http.post(route, json=body)
                ok = response.status_code == 200 and len(response.json()[answers[route]]) == 1
            except (httpx.HTTPError, ValueError, KeyError):
                ok = False
            latencies.append((route, (time.perf_counter() - start) * 1000))
            if not ok:
                failures.append((route, index))


def latency_summary(latencies: list[float]) -> dict:
    """Count, p50 and p99 (ms) of a list of latencies."""
    latencies = sorted(latencies)
    done = len(latencies)
    return {
        "requests": done,
        "p50_ms": latencies[done // 2] if done else None,
        "p99_ms": latencies[min(done - 1, int(0.99 * done))] if done else None,
    }


async def load(
    url: str,
    instances: list,
    clients: int,
    total: int,
    time_limit: float,
    explain_fraction: float = 0.0,
) -> dict:
    counter = {"next": 0, "total": total, "explain_fraction": explain_fraction}
    latencies: list[tuple[str, float]] = []
    failures: list[tuple[str, int]] = []
    deadline = time.monotonic() + time_limit
    start = time.perf_counter()
    await asyncio.gather(
        *(client(url, instances, counter, deadline, latencies, failures) for _ in range(clients))
    )
    elapsed = time.perf_counter() - start
    done = len(latencies)
    result = {
        "not_sent": total - done,
        "failed": len(failures),
        "clients": clients,
        "explain_fraction": explain_fraction,
        "seconds": elapsed,
        "requests_per_s": done / elapsed,
        **latency_summary([ms for _, ms in latencies]),
    }
    for route in ("/predict", "/explain"):
        summary = latency_summary([ms for r, ms in latencies if r == route])
        summary["failed"] = sum(1 for r, _ in failures if r == route)
        result[route.strip("/")] = summary
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("export", help="exported model directory")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds, at most")
    parser.add_argument(
        "--explain-fraction", type=float, default=0.0, help="share of requests to /explain"
    )
    parser.add_argument("--server-args", default="", help="extra `bertfit serve` flags")
    parser.add_argument("--output", default="bench/results/serve_load.json")
    args = parser.parse_args()

    from bertfit.data.readers import read_glue_split
    from bertfit.data.tasks import MRPC

    root = Path(args.data_dir)
    dev = read_glue_split((root / "MRPC" if (root / "MRPC").is_dir() else root) / "dev.tsv", MRPC,
                          "dev")  # fmt: skip
    instances = [{"sentence1": a, "sentence2": b} for a, b in zip(*dev.columns)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(args.export, port, args.server_args.split())
    try:
        wait_healthy(server, url)
        metadata = httpx.get(f"{url}/metadata").json()
        result = asyncio.run(
            load(
                url,
                instances,
                args.clients,
                args.requests,
                args.time_limit,
                args.explain_fraction,
            )
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    result.update(export=metadata["export"], limits=metadata["limits"])
    result.update(server_args=args.server_args, load_average=os.getloadavg())
    print(json.dumps(result, indent=2))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
