"""Printing benchmark: one-page lists per second per core, bytes per page, and a 20,000-list batch.

Lists are made in memory (12 offers in 5 departments, each with its reason, --needs needs
lines, a reward every fifth list, a tip; one name in four in
Chinese, Arabic, Cyrillic or with emoji), so the figures are the rendering alone, with the
embedded Unicode fonts:

1. merged file, one core: lists drawn one after another on one canvas (fonts embedded once);
2. separate files, one core: each list in its own PDF (fonts embedded, subset, in each);
3. a batch of --lists lists over --stores stores with both cores (`render_documents` with its
   manifests, as `engine.printjob.print_batch` runs it): wall time with per-list files and without them.

Target: >= 200 lists/s per core.

    .venv/bin/python benchmarks/print_bench.py [--lists 20000] [--workers 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

from engine.codes import make_code
from printing.document import ListDocument, NeedLine, OfferLine, RewardLine
from printing.fonts import load_fonts
from printing.layout import LayoutOptions, draw_list, new_canvas
from printing.render import render_documents

_NAMES = [
    "Maria Gonzalez",
    "王静",
    "فاطمة Johnson",
    "Олег Петров",
    "James Smith",
    "Zoë Ångström 🥑",
    "Priya Patel",
    "Ngọc Ánh Trần",
]
_ITEMS = [
    ("Dairy", "Store Brand 2% Reduced Fat Milk 1 gal", 389),
    ("Produce", "Organic Bananas per lb", 79),
    ("Bakery", "Whole Wheat Sandwich Bread 20 oz", 329),
    ("Pet", "Premium Dry Dog Food 15 lb", 2499),
    ("Grocery", "Ground Coffee Medium Roast 12 oz", 899),
    ("Dairy", "Greek Yogurt Plain 32 oz", 549),
    ("Health", "Pain Relief Ibuprofen 200 mg 100 ct", 1099),
    ("Grocery", "Pasta Sauce Marinara 24 oz", 279),
]


def make_docs(n: int, stores: int = 8, offers: int = 12, needs: int = 0) -> list[ListDocument]:
    """`n` one-page lists spread over `stores` stores, in print order."""
    start = dt.date(2025, 3, 3)
    end = start + dt.timedelta(days=13)
    docs = []
    for i in range(1, n + 1):
        lines = tuple(
            OfferLine(
                department=dept,
                description=desc,
                usual_price_cents=price,
                discount_cents=price // 10 + j,
                max_uses=1,
                valid_to=end,
                expected_on=start + dt.timedelta(days=(i + j) % 14),
                kind="cycle",
                reason=f"you buy it about every {7 + j} days",
            )
            for j, (dept, desc, price) in enumerate(_ITEMS[(i + k) % len(_ITEMS)] for k in range(offers))
        )
        docs.append(
            ListDocument(
                list_id=i,
                code=make_code(i, b"bench"),
                chain_name="Fresh Fields Market",
                store_id=f"S{i % stores:02d}",
                store_lines=("Fresh Fields Market Springfield", "100 Main St", "Springfield, IL 62701"),
                customer_id=f"C{i:07d}",
                address_lines=(_NAMES[i % len(_NAMES)], f"{i} Elm Street", "Springfield, IL 62704"),
                postal_code=f"{62000 + i % 997}",
                card_number=f"60000000{i:08d}",
                valid_from=start,
                valid_to=end,
                offers=lines,
                rewards=(RewardLine(1000, 5000, 3, end),) if i % 5 == 0 else (),
                tip_title="Tip: cook once, eat twice",
                tip_body="Double a recipe and freeze half for a busy night.",
                needs=tuple(
                    NeedLine(dept, desc, price, start + dt.timedelta(days=(i + k) % 14), desc)
                    for k, (dept, desc, price) in enumerate(_ITEMS[(i + k + 3) % len(_ITEMS)] for k in range(needs))
                ),
            )
        )
    return sorted(docs, key=lambda d: (d.store_id, d.postal_code, d.customer_id))


def bench_merged(docs: list[ListDocument], options: LayoutOptions) -> tuple[float, float]:
    fonts = load_fonts()
    buf = io.BytesIO()
    t0 = time.perf_counter()
    c = new_canvas(buf, options, fonts.primary)
    pages = sum(draw_list(c, d, fonts, options) for d in docs)
    c.save()
    return len(docs) / (time.perf_counter() - t0), len(buf.getvalue()) / pages


def bench_separate(docs: list[ListDocument], options: LayoutOptions) -> tuple[float, float]:
    fonts = load_fonts()
    total = pages = 0
    t0 = time.perf_counter()
    for d in docs:
        buf = io.BytesIO()
        c = new_canvas(buf, options, fonts.primary)
        pages += draw_list(c, d, fonts, options)
        c.save()
        total += len(buf.getvalue())
    return len(docs) / (time.perf_counter() - t0), total / pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lists", type=int, default=20_000, help="lists in the batch run")
    parser.add_argument("--stores", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=1000, help="lists in the one-core runs")
    parser.add_argument("--needs", type=int, default=4, help="needs lines a list (0: none, as before issue 16)")
    args = parser.parse_args(argv)
    options = LayoutOptions()
    load_fonts()

    sample = make_docs(args.sample, needs=args.needs)
    rate, per_page = bench_merged(sample, options)
    print(f"merged file, 1 core:    {rate:7.0f} lists/s   {per_page / 1024:6.1f} KiB/page   (target >= 200 lists/s)")
    rate, per_page = bench_separate(sample[: max(1, args.sample // 2)], options)
    print(f"separate files, 1 core: {rate:7.0f} lists/s   {per_page / 1024:6.1f} KiB/page")

    docs = make_docs(args.lists, args.stores, needs=args.needs)
    for list_files in (False, True):
        work = Path(tempfile.mkdtemp(prefix="listwise-print-bench-"))
        t0 = time.perf_counter()
        done = render_documents(docs, work, options, list_files=list_files, workers=args.workers)
        wall = time.perf_counter() - t0
        pages = done["pages"]
        merged = sum(r["bytes"] for r in done["stores"])
        what = "merged + per-list files" if list_files else "merged files only     "
        print(
            f"batch of {len(docs)} lists, {args.workers} workers, {what}: {wall:6.1f} s "
            f"({len(docs) / wall:5.0f} lists/s, {pages} pages, merged {merged / pages / 1024:.1f} KiB/page)"
        )
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
