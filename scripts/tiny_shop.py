"""Write a tiny synthetic shop (items.csv, events.csv) for install checks: 4 categories, 60 users.

Users browse within one category, so a sequential model has something to learn. Usage:
    python scripts/tiny_shop.py OUT_DIR
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

CATS = ["Beauty > Skin", "Beauty > Hair", "Beauty > Nails", "Home > Kitchen"]
NOUNS = [["face cream", "sunscreen lotion"], ["shampoo", "hair conditioner"], ["nail polish", "nail file"],
         ["frying pan", "kitchen knife"]]  # fmt: skip


def main(out: Path, n_items: int = 40, n_users: int = 60, seed: int = 0) -> None:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "items.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "title", "category", "price"])
        for j in range(n_items):
            kind = NOUNS[j % 4][(j // 4) % len(NOUNS[j % 4])]
            w.writerow([f"i{j}", f"{kind} no. {j}", CATS[j % 4], 5 + j])
    with open(out / "events.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["event_id", "user_id", "item_id", "event_type", "ts"])
        for u in range(n_users):
            pool = [j for j in range(n_items) if j % 4 == u % 4]
            for t in range(8):
                etype = "purchase" if t == 7 else "view"
                w.writerow([f"e{u}-{t}", f"u{u}", f"i{rng.choice(pool)}", etype, 1_700_000_000 + u * 100 + t])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
