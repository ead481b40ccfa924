"""Online store benchmarks: push rate, read latency, Redis memory per entity, push peak memory.

Everything runs against one private redis-server started here, and every figure has a baseline
measured in the same run on that server:

- push rate: `mlpipeline.online.push_staged` of a real export (1M entities x 20 DOUBLE features,
  Parquet in the folder object store) against `redis-benchmark` writing 20-field hashes with
  HSET, pipelined (-P 100, 50 clients); target: at least half its rate;
- read latency p50/p99: `OnlineReader.get` (1 entity) against a raw redis-py GET of one key
  (target within 1.5x), `OnlineReader.get_many` (100 entities) against one raw MGET of 100 keys
  (within 2x); the reader's figure includes building keys and decoding typed dicts;
- Redis memory per entity (used_memory delta / entities) against the same 20 floats stored by
  redis-benchmark as plain hashes (target: no more);
- push peak memory: max RSS of the process running the push (a subprocess, measured by the
  kernel), against the 1 GB budget of the issue (target: under it);
- scale: the same-shaped export at 10M entities pushed to the same server after a flush. Its
  rate against the 1M push's (target: at least 0.8x), its peak RSS against the 1 GB budget, and
  its Redis memory per entity against the 1M figure (within 1.1x: Redis's key tables grow in
  powers of two, so a few bytes per key more at 10M is expected, a growing vector is not).

Sizes: BENCH_ONLINE_ENTITIES (default 1M) and BENCH_ONLINE_SCALE_ENTITIES (default 10M); quick
mode for development: 100000 and 1000000. At 10M, Redis holds about 4 GB (the private server
has no maxmemory), DuckDB builds the table within a 4 GB memory limit, and the full run takes
about 8 minutes on two cores.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import redis

from benchmarks.harness import Result
from mlpipeline import online
from mlpipeline.core.objectstore import LocalStore
from mlpipeline.devtools import localredis
from mlpipeline.features.export import export_snapshot

ENTITIES = int(os.environ.get("BENCH_ONLINE_ENTITIES", 1_000_000))
SCALE_ENTITIES = int(os.environ.get("BENCH_ONLINE_SCALE_ENTITIES", 10_000_000))
SCALE_RATE_TARGET = 0.8
SCALE_MEMORY_TARGET = 1.1
FEATURES = 20
CUTOFF = date(2026, 1, 5)
PUSH_BUDGET_MB = 1024
LATENCY_ROUNDS_1 = 20_000
LATENCY_ROUNDS_100 = 3_000
# redis-benchmark's values: 20 floats of the same width as the exported ones.
BENCH_VALUES = [f"{random.Random(i).uniform(0, 1000):.4f}" for i in range(FEATURES)]

PUSH = """
import json, sys
import pandas  # pyarrow imports it on first use of a Python value: a one-off, not the push rate
from pathlib import Path
from mlpipeline import online
from mlpipeline.core.objectstore import LocalStore
manifest = json.loads(Path(sys.argv[1]).read_text())
stats = online.push_staged(sys.argv[3], LocalStore(Path(sys.argv[2])), manifest)
# VmHWM: this process's peak RSS. (getrusage's maxrss would carry the parent's peak over exec.)
status = Path("/proc/self/status").read_text().splitlines()
stats["peak_kb"] = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps(stats))
"""


@dataclass(frozen=True)
class _Feature:
    name: str
    type: str
    default: float = 0.0


@dataclass(frozen=True)
class _Spec:
    entity_key: str
    ttl_days: int
    features: list[_Feature]


def _export(workdir: Path, store: LocalStore, entities: int) -> dict:
    """Manifest of a fresh export of `entities` random 20-feature vectors; DuckDB builds and
    sorts the table out of core (spilling to `workdir`), the export streams it by row group."""
    db = workdir / f"snapshot-{entities}.duckdb"
    spec = _Spec("customer_id", 35, [_Feature(f"f{i:02d}", "DOUBLE") for i in range(FEATURES)])
    with duckdb.connect(str(db)) as con:
        con.execute(f"SET temp_directory = '{workdir / 'duckdb-spill'}'")
        con.execute("SET memory_limit = '4GB'")
        con.execute("CREATE SCHEMA features")
        values = ", ".join(f"round(random() * 1000, 4) AS f{i:02d}" for i in range(FEATURES))
        con.execute(
            f"CREATE TABLE features.customer_snapshot AS SELECT printf('c%08d', i) AS customer_id, "
            f"DATE '{CUTOFF}' AS cutoff_date, {values} FROM range({entities}) t(i)"
        )
        manifest = export_snapshot(con, store, CUTOFF, spec, "bench").manifest
    db.unlink()
    return manifest


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _redis_benchmark(url: str, client: redis.Redis) -> tuple[float, float]:
    """HSET of 20-field hashes, pipelined: (hashes per second, bytes per hash)."""
    binary = shutil.which("redis-benchmark")
    if not binary:
        raise RuntimeError(
            "redis-benchmark is missing (Debian/Ubuntu: apt-get install redis-tools); it is the "
            "baseline of the push benchmark"
        )
    client.flushall()
    before = _used_memory(client)
    port = str(client.connection_pool.connection_kwargs["port"])
    fields = [part for i, v in enumerate(BENCH_VALUES) for part in (f"f{i:02d}", v)]
    command = [binary, "-h", "127.0.0.1", "-p", port, "-n", str(ENTITIES), "-r", "1000000000"]
    command += ["-P", "100", "-c", "50", "--csv", "HSET", "bench:__rand_int__", *fields]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rate = float(out.strip().splitlines()[-1].split(",")[1].strip('"'))
    hashes = client.dbsize()
    per_hash = (_used_memory(client) - before) / hashes
    client.flushall()
    return rate, per_hash


def _push(url: str, store: LocalStore, manifest: dict, workdir: Path) -> tuple[dict, float]:
    """Push in a fresh process; its stats and its peak RSS in MB (the kernel's VmHWM)."""
    path = workdir / "manifest.json"
    path.write_text(json.dumps(manifest))
    done = subprocess.run(
        [sys.executable, "-c", PUSH, str(path), str(store.root), url],
        check=True,
        capture_output=True,
        text=True,
    )
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    return stats, stats["peak_kb"] / 1024


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1e6, ordered[int(len(ordered) * 0.99)] * 1e6


def _latencies(
    client: redis.Redis, reader: online.OnlineReader, export_id: str
) -> dict[str, tuple[float, float]]:
    """p50/p99 in microseconds; ours and the baseline alternate so they share the noise."""
    rng = random.Random(7)
    prefix = online.entity_prefix(export_id)
    ids = [f"c{rng.randrange(ENTITIES):08d}" for _ in range(LATENCY_ROUNDS_1)]
    batches = [
        [f"c{rng.randrange(ENTITIES):08d}" for _ in range(100)] for _ in range(LATENCY_ROUNDS_100)
    ]
    raw_keys = [[prefix + e for e in batch] for batch in batches]
    for entity in ids[:200]:  # warm up: connections, script of nothing, manifest cache
        client.get(prefix + entity)
        reader.get(entity)
    clock = time.perf_counter
    ours_1, raw_1, ours_100, raw_100 = [], [], [], []
    for turn, entity in enumerate(ids):
        for ours in (turn % 2 == 0, turn % 2 == 1):  # who goes first alternates
            started = clock()
            if ours:
                reader.get(entity)
            else:
                client.get(prefix + entity)
            (ours_1 if ours else raw_1).append(clock() - started)
    for turn, (batch, keys) in enumerate(zip(batches, raw_keys, strict=True)):
        for ours in (turn % 2 == 0, turn % 2 == 1):
            started = clock()
            if ours:
                reader.get_many(batch)
            else:
                client.mget(keys)
            (ours_100 if ours else raw_100).append(clock() - started)
    return {
        "ours_1": _percentiles(ours_1),
        "raw_1": _percentiles(raw_1),
        "ours_100": _percentiles(ours_100),
        "raw_100": _percentiles(raw_100),
    }


def run(workdir: Path) -> list[Result]:
    url, _ = localredis.start(workdir / "redis", persist=False)
    # FLUSHALL of millions of keys blocks for longer than redis-py's default 5 s timeout.
    client = redis.Redis.from_url(url, socket_timeout=300)
    try:
        store = LocalStore(workdir / "objectstore")
        manifest = _export(workdir, store, ENTITIES)

        bench_rate, hash_bytes = _redis_benchmark(url, client)

        client.flushall()
        before = _used_memory(client)
        stats, peak_mb = _push(url, store, manifest, workdir)
        entity_bytes = (_used_memory(client) - before) / ENTITIES
        online.verify_staged(client, manifest)
        online.switch(client, manifest)
        lat = _latencies(client, online.OnlineReader(url), manifest["export_id"])

        client.flushall()
        shutil.rmtree(store.root / manifest["prefix"])
        scale_manifest = _export(workdir, store, SCALE_ENTITIES)
        before = _used_memory(client)
        scale_stats, scale_peak_mb = _push(url, store, scale_manifest, workdir)
        scale_entity_bytes = (_used_memory(client) - before) / SCALE_ENTITIES
    finally:
        localredis.stop(url)

    scale = f"{ENTITIES} entities x {FEATURES} features"
    return [
        Result.at_least(
            f"push rate ({scale}) vs redis-benchmark HSET 20 fields -P 100",
            stats["rows_per_second"],
            "entities/s",
            bench_rate,
            0.5,
        ),
        Result.at_most(
            "read p50, 1 entity vs raw GET", lat["ours_1"][0], "us", lat["raw_1"][0], 1.5
        ),
        Result.at_most(
            "read p99, 1 entity vs raw GET", lat["ours_1"][1], "us", lat["raw_1"][1], 1.5
        ),
        Result.at_most(
            "read p50, 100 entities vs raw MGET of 100 keys",
            lat["ours_100"][0],
            "us",
            lat["raw_100"][0],
            2.0,
        ),
        Result.at_most(
            "read p99, 100 entities vs raw MGET of 100 keys",
            lat["ours_100"][1],
            "us",
            lat["raw_100"][1],
            2.0,
        ),
        Result.at_most(
            "Redis memory per entity vs 20 floats as a plain hash",
            entity_bytes,
            "bytes",
            hash_bytes,
            1.0,
        ),
        Result.at_most(
            f"push peak RSS ({scale}) vs the 1 GB budget", peak_mb, "MB", PUSH_BUDGET_MB, 1.0
        ),
        *_scale_rows(stats, entity_bytes, scale_stats, scale_peak_mb, scale_entity_bytes),
    ]


def _scale_rows(
    stats: dict, entity_bytes: float, scale_stats: dict, peak_mb: float, scale_entity_bytes: float
) -> list[Result]:
    """The push at SCALE_ENTITIES against the same push at ENTITIES and the memory budget."""
    at = f"at {SCALE_ENTITIES} entities"
    return [
        Result.at_least(
            f"push rate {at} vs at {ENTITIES}",
            scale_stats["rows_per_second"],
            "entities/s",
            stats["rows_per_second"],
            SCALE_RATE_TARGET,
        ),
        Result.at_most(
            f"push peak RSS {at} vs the 1 GB budget", peak_mb, "MB", PUSH_BUDGET_MB, 1.0
        ),
        Result.at_most(
            f"Redis memory per entity {at} vs at {ENTITIES}",
            scale_entity_bytes,
            "bytes",
            entity_bytes,
            SCALE_MEMORY_TARGET,
        ),
    ]
