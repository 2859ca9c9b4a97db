"""Write twitter-sample.csv: a small synthetic trace in Twitter's cache-trace format.

The format is that of github.com/twitter/cache-trace (Yang et al., OSDI 2020):
`timestamp,anonymized key,key size,value size,client id,operation,TTL`, timestamps in
whole seconds, one request per line. The content is synthetic (Zipf keys, a get-heavy
mix with gets/cas/add/delete, as the real traces contain, and incr on separate counter
keys, which hold numbers) so that trace replay can be tested without downloading
gigabytes. Deterministic: the test suite regenerates the
file and checks it matches the committed copy.

    python tests/data/make_trace.py [OUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SEED = 52
SECONDS = 30
RATE = 100          # requests per second, on average
KEYS = 500
OPS = ("get", "gets", "set", "add", "cas", "delete")
OP_WEIGHTS = (0.80, 0.05, 0.08, 0.03, 0.02, 0.02)
COUNTERS = 10
COUNTER_SHARE = 0.01
TTLS = (0, 60, 3600)
OUT = Path(__file__).with_name("twitter-sample.csv")


def rows() -> list[str]:
    """The trace lines, without a header (the real traces have none)."""
    rng = np.random.default_rng(SEED)
    per_second = rng.poisson(RATE, SECONDS)
    count = int(per_second.sum())
    stamps = np.repeat(1_600_000_000 + np.arange(SECONDS), per_second)
    ranks = np.minimum(rng.zipf(1.2, count), KEYS) - 1
    key_names = [f"k{r:05x}{(r * 2654435761) % 0xFFFF:04x}" for r in range(KEYS)]
    key_sizes = rng.integers(12, 40, KEYS)
    value_sizes = rng.integers(10, 2000, KEYS)
    ops = rng.choice(len(OPS), count, p=OP_WEIGHTS)
    ttls = rng.choice(TTLS, KEYS)
    clients = rng.integers(1, 9, count)
    counter = rng.random(count) < COUNTER_SHARE
    counter_keys = rng.integers(0, COUNTERS, count)
    lines = []
    for i, (stamp, rank, op, client) in enumerate(zip(stamps.tolist(), ranks.tolist(),
                                                      ops.tolist(), clients.tolist())):
        if counter[i]:
            lines.append(f"{stamp},counter{counter_keys[i]},12,0,{client},incr,60")
            continue
        size = 0 if OPS[op] == "delete" else int(value_sizes[rank])
        lines.append(f"{stamp},{key_names[rank]},{key_sizes[rank]},{size},{client},"
                     f"{OPS[op]},{ttls[rank]}")
    return lines


def main(out: Path = OUT) -> None:
    out.write_text("\n".join(rows()) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
