"""What the gutter pool served in a run with mcrouter-style routing, apart from the main pool.

From the servers' own counters (server-stats.json), since the gutter is made of real
memcached servers: their get hits and misses are exactly the lookups that failed over.
run.json's `target.options.gutter` names those nodes.
"""

from __future__ import annotations

from typing import Any

from bench.analysis.summary import GutterFigures, PoolFigures
from bench.results.rundir import RunInfo


def gutter_figures(runs: list[RunInfo],
                   server_stats: list[dict[str, Any]]) -> GutterFigures | None:
    """summary.json `gutter`: hits, misses and hit ratio of the gutter nodes (summed over
    run directories), and the main pool's for comparison; None without a gutter pool."""
    totals = {"gutter": {"hits": 0, "misses": 0}, "main": {"hits": 0, "misses": 0}}
    gutter_seen = False
    for info, stats in zip(runs, server_stats):
        options = (info.target.options if info.target else None) or {}
        gutter = set(options.get("gutter") or [])
        gutter_seen = gutter_seen or bool(gutter)
        before = (stats.get("before") or {}).get("nodes") or {}
        after = (stats.get("after") or {}).get("nodes") or {}
        for node, counters in after.items():
            pool = totals["gutter" if node in gutter else "main"]
            for name, key in (("get_hits", "hits"), ("get_misses", "misses")):
                pool[key] += int(counters.get(name, 0)) - int(before.get(node, {}).get(name, 0))
    if not gutter_seen:
        return None
    figures = {name: PoolFigures(hits=pool["hits"], misses=pool["misses"],
                                 hit_ratio=pool["hits"] / (pool["hits"] + pool["misses"])
                                 if pool["hits"] + pool["misses"] else None)
               for name, pool in totals.items()}
    return GutterFigures(gutter=figures["gutter"], main=figures["main"])
