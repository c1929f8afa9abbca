"""Serial registry: claim and lookup time, and process memory, as the batch grows.

    python bench/serials.py [--sizes 10000,1000000,5000000] [--dir DIR]

One registry file is filled (bulk insert through a second connection, in chunks, so
the filler itself keeps memory flat) to each size in turn; at each size it measures,
through `SerialRegistry` itself:
  claim new    claim() of serials not yet held (the per-pack path), synchronous=NORMAL
  claim FULL   the same with synchronous=FULL (one fsync per claim: power-cut safe)
  hit / miss   holder() of a held serial / of one never seen
and the process RSS. For comparison it then measures the two alternatives considered:
  python set   every "gtin|serial" in a set (memory grows with the batch)
  bloom front  a Bloom filter (1% false positives) before SQLite: it answers "never
               seen" without touching the B-tree, but a claim of a new serial must
               insert into the B-tree anyway, so it cannot make the claim cheaper.
Serials are random 12-character strings from GS1 character set 82's alphanumerics, as
serialisation systems issue them (non-sequential).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import multiprocessing as mp
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.store.serials import SerialRegistry  # noqa: E402

GTIN = "09504000059101"
ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", "S1")


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def serials(rng: np.random.Generator, n: int) -> list[str]:
    idx = rng.integers(0, len(ALPHABET), size=(n, 12))
    return ALPHABET[idx].view("S12").ravel().astype(str).tolist()


def fill(path: Path, start: int, stop: int, rng: np.random.Generator, held: list[str]) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-65536")
    chunk = 200_000
    n = start
    while n < stop:
        k = min(chunk, stop - n)
        batch = serials(rng, k)
        with db:
            db.executemany(
                "INSERT OR IGNORE INTO serials (gtin, serial, batch, item_id, first_seen)"
                " VALUES (?, ?, 'B1', ?, 0)",
                ((GTIN, s, f"fill-{n + i}") for i, s in enumerate(batch)),
            )
        held.extend(batch[:: max(1, k // 500)])  # a sample of held serials for hit lookups
        del held[:-5000]
        n += k
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def timed_us(fn, args_list) -> tuple[float, float]:
    ts = []
    for a in args_list:
        t0 = time.perf_counter()
        fn(*a)
        ts.append((time.perf_counter() - t0) * 1e6)
    ts.sort()
    return statistics.median(ts), ts[min(len(ts) - 1, int(0.99 * len(ts)))]


class Bloom:
    """A plain Bloom filter on a numpy bit array (k hashes from one blake2b digest)."""

    def __init__(self, n: int, fp: float = 0.01):
        self.m = int(-n * math.log(fp) / (math.log(2) ** 2)) + 8
        self.k = max(1, round(self.m / n * math.log(2)))
        self.bits = np.zeros((self.m + 7) // 8, np.uint8)

    def _idx(self, key: str) -> list[int]:
        d = hashlib.blake2b(key.encode(), digest_size=16).digest()
        h1 = int.from_bytes(d[:8], "little")
        h2 = int.from_bytes(d[8:], "little") | 1
        return [(h1 + i * h2) % self.m for i in range(self.k)]

    def add(self, key: str) -> None:
        for i in self._idx(key):
            self.bits[i >> 3] |= 1 << (i & 7)

    def __contains__(self, key: str) -> bool:
        return all(self.bits[i >> 3] & (1 << (i & 7)) for i in self._idx(key))


def measure(path: str, held: list[str], samples: int, seed: int) -> dict[str, float]:
    """Run in a fresh interpreter: what an appliance holding this registry would see."""
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    with SerialRegistry(path, synchronous="NORMAL") as reg:
        hits = [(GTIN, s) for s in rng.choice(held, size=samples)]
        misses = [(GTIN, s + "~") for s in serials(rng, samples)]
        new = [(GTIN, s + "!", "B1", f"new-{i}") for i, s in enumerate(serials(rng, samples))]
        timed_us(reg.holder, hits[:200])  # warm the cache the way a running line has it
        out["hit"], out["hit99"] = timed_us(reg.holder, hits)
        out["miss"], out["miss99"] = timed_us(reg.holder, misses)
        out["claim"], out["claim99"] = timed_us(reg.claim, new)
        out["rss"] = rss_mib()
    with SerialRegistry(path, synchronous="FULL") as reg:
        full = [(g, s + "F", b, i) for g, s, b, i in new[:200]]
        out["full"], out["full99"] = timed_us(reg.claim, full)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,1000000,5000000")
    ap.add_argument("--dir", type=Path, default=None, help="where the registry file goes")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--no-alternatives", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(7)
    tmp = tempfile.TemporaryDirectory(dir=args.dir)
    path = Path(tmp.name) / "serials.db"
    SerialRegistry(path).close()  # schema
    held: list[str] = []
    spawn = mp.get_context("spawn")
    print(f"registry file: {path} (page cache 8 MiB, mmap off)")
    print("each size is measured in a fresh process that only opens the registry (its RSS)")
    print(
        f"{'serials':>10s} {'fill s':>7s} {'claim p50/p99 us':>18s} {'claim FULL p50/p99 us':>22s}"
        f" {'hit p50/p99 us':>16s} {'miss p50/p99 us':>16s} {'RSS MiB':>8s} {'file MiB':>9s}"
    )
    n = 0
    for size in sizes:
        t0 = time.perf_counter()
        fill(path, n, size, rng, held)
        fill_s = time.perf_counter() - t0
        n = size
        with spawn.Pool(1) as pool:
            m = pool.apply(measure, (str(path), list(held), args.samples, size))
        mib = path.stat().st_size / 2**20
        print(
            f"{size:>10d} {fill_s:>7.1f} {m['claim']:>8.1f}/{m['claim99']:<9.1f}"
            f" {m['full']:>10.1f}/{m['full99']:<11.1f}"
            f" {m['hit']:>7.1f}/{m['hit99']:<8.1f} {m['miss']:>7.1f}/{m['miss99']:<8.1f}"
            f" {m['rss']:>8.0f} {mib:>9.0f}"
        )
    tmp.cleanup()
    if args.no_alternatives:
        return
    top = sizes[-1]
    print(f"\nalternatives at {top} serials:")
    before = rss_mib()
    keys = set()
    for start in range(0, top, 500_000):
        keys.update(f"{GTIN}|{s}" for s in serials(rng, min(500_000, top - start)))
    probe = [(f"{GTIN}|{s}",) for s in serials(rng, args.samples)]
    t = timed_us(keys.__contains__, probe)
    print(f"  python set: +{rss_mib() - before:.0f} MiB RSS, lookup p50 {t[0]:.2f} us")
    del keys
    bloom = Bloom(top)
    t0 = time.perf_counter()
    for start in range(0, top, 500_000):
        for s in serials(rng, min(500_000, top - start)):
            bloom.add(s)
    build = time.perf_counter() - t0
    t = timed_us(bloom.__contains__, [(s,) for s in serials(rng, args.samples)])
    print(
        f"  bloom front: {bloom.bits.nbytes / 2**20:.1f} MiB, k={bloom.k}, build {build:.0f} s,"
        f" 'never seen' answer p50 {t[0]:.1f} us (claim of a new serial still inserts)"
    )


if __name__ == "__main__":
    main()
