"""Latency of the serving workers' shared-state bus (PostgreSQL LISTEN/NOTIFY, serving/shared_state.py).

Two SharedState endpoints on one channel, as two workers hold them: one publishes a one-event
batch (what a worker does before it acknowledges POST /v1/events), the other records when it
is delivered. Prints the publish time (the cost added to an event's acknowledgement) and the
publish-to-delivery time (how stale another worker can be), p50/p99/max over --n messages:

    python benchmarks/bus_latency.py --store postgresql://postgres@127.0.0.1:PORT/db --n 300
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

import numpy as np

from soutui.serving.shared_state import SharedState


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True, help="postgresql:// URL")
    ap.add_argument("--n", type=int, default=300, help="messages (one event each)")
    ap.add_argument("--gap", type=float, default=0.01, help="seconds between messages")
    args = ap.parse_args(argv)
    a, b = SharedState(args.store, "soutui_bus_latency"), SharedState(args.store, "soutui_bus_latency")
    a.start()
    b.start()
    delivered: dict[str, float] = {}
    arrived = threading.Event()

    def on_b(msg: dict[str, Any]) -> None:
        delivered[msg["r"][0][0]] = time.perf_counter()
        arrived.set()

    a.open_gate(lambda m: None)
    b.open_gate(on_b)
    publish, lag = [], []
    try:
        for i in range(args.n):
            arrived.clear()
            rec = [{"event_id": f"e{i}", "user_id": "u", "item_id": "i", "event_type": "view", "ts": 1}]
            t0 = time.perf_counter()
            a.publish_events(rec)
            publish.append(time.perf_counter() - t0)
            if not arrived.wait(5):
                raise SystemExit(f"bus_latency: message {i} not delivered within 5 s")
            lag.append(delivered[f"e{i}"] - t0)
            time.sleep(args.gap)
    finally:
        a.close()
        b.close()
    for name, xs in (("publish", publish), ("publish->delivered", lag)):
        ms = np.array(xs) * 1000
        print(f"{name:<19} ms: p50 {np.percentile(ms, 50):.2f}  p99 {np.percentile(ms, 99):.2f}  max {ms.max():.2f}")
    print(f"n={args.n} one-event messages, loopback; load average {os.getloadavg()[0]:.2f} (1 min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
