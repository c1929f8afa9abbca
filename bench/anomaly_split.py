"""Split a folder of good photos into fit/ and test_good/ (symbolic links, name order).

Every 4th photo by name (the 4th, 8th, ...) goes to test_good/, the rest to fit/: on
the 200 VisA capsule normal photos, 150 to fit and 50 held out.

Run: python bench/anomaly_split.py SRC_DIR OUT_DIR [--every 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.train.dataset import IMAGE_EXT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--every", type=int, default=4)
    a = ap.parse_args()
    files = sorted(p for p in Path(a.src).iterdir() if p.suffix.lower() in IMAGE_EXT)
    out = Path(a.out)
    for sub in ("fit", "test_good"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    n = {"fit": 0, "test_good": 0}
    for i, p in enumerate(files):
        sub = "test_good" if i % a.every == a.every - 1 else "fit"
        link = out / sub / p.name
        if not link.exists():
            link.symlink_to(p.resolve())
        n[sub] += 1
    print(n)


if __name__ == "__main__":
    main()
