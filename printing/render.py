"""Render documents to the print shop's files: one PDF per list, one merged PDF per store, manifests.

`render_documents(docs, target, options)` takes the `ListDocument`s to print, in print order,
and writes under `target`:

* ``lists/<code>.pdf``: each list on its own, fonts embedded (``list_files``);
* ``print/store-<store_id>.pdf``: every list of a store in the order given, fonts embedded once
  for the whole file (a document without a store goes to ``print/store-none.pdf``);
* ``manifest.csv``: one row per list: list_code, customer_id, store_id, pages, file, sha256
  (of the list's own PDF), merged_file, merged_first_page (1-based), html_file, email_file;
* ``print/stores.csv``: one row per merged file: store_id, lists, pages, file, sha256;
* ``html/<code>.html`` (`LayoutOptions.html_files`) and ``mail/<code>.eml`` for each document
  with an e-mail address (`LayoutOptions.email_files`; written, not sent): `printing.digital`.

What to print (which lists, which customers) is decided by the caller; an empty list of
documents writes no file at all. Stores are rendered in parallel processes, largest first
(``workers``); the output is byte-for-byte the same whatever the number of workers
(reportlab's invariant mode), so the checksums are reproducible.
"""

from __future__ import annotations

import csv
import hashlib
import io
import multiprocessing as mp
import os
import re
from collections.abc import Callable
from pathlib import Path

from printing.digital import list_email, list_html
from printing.document import ListDocument
from printing.fonts import load_fonts
from printing.layout import LayoutOptions, draw_list, new_canvas

__all__ = ["render_documents", "render_store", "MANIFEST_COLUMNS", "STORE_COLUMNS"]

Progress = Callable[[str, int, int], None]
MANIFEST_COLUMNS = (
    "list_code",
    "customer_id",
    "store_id",
    "pages",
    "file",
    "sha256",
    "merged_file",
    "merged_first_page",
    "html_file",
    "email_file",
)
STORE_COLUMNS = ("store_id", "lists", "pages", "file", "sha256")
_NO_STORE = "none"
_MIN_PARALLEL = 200  # fewer lists than this: render in this process (a pool costs ~0.1 s)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "_"


_COUNTER = None


def _init_worker(counter) -> None:  # noqa: ANN001 - a multiprocessing Value
    global _COUNTER
    _COUNTER = counter


def render_store(
    store_id: str,
    docs: list[ListDocument],
    target: Path,
    options: LayoutOptions,
    font_path: str = "",
    list_files: bool = True,
) -> dict:
    """Render one store's lists: the merged file and (with `list_files`) one file per list.

    Returns the store's row of ``print/stores.csv`` with its manifest rows under "rows".
    """
    fonts = load_fonts(font_path)
    merged_rel = Path("print") / f"store-{_safe(store_id)}.pdf"
    merged = new_canvas(str(target / merged_rel), options, fonts.primary)
    rows, page = [], 1
    for i, doc in enumerate(docs):
        first = page
        pages = draw_list(merged, doc, fonts, options)
        page += pages
        file_rel, digest = "", ""
        if list_files:
            buf = io.BytesIO()
            own = new_canvas(buf, options, fonts.primary)
            draw_list(own, doc, fonts, options)
            own.save()
            data = buf.getvalue()
            file_rel = str(Path("lists") / f"{doc.code}.pdf")
            (target / file_rel).write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
        html_rel = email_rel = ""
        if options.html_files:
            html_rel = str(Path("html") / f"{doc.code}.html")
            (target / html_rel).write_text(list_html(doc, options), encoding="utf-8")
        if options.email_files:
            message = list_email(doc, options, options.email_from)
            if message is not None:
                email_rel = str(Path("mail") / f"{doc.code}.eml")
                (target / email_rel).write_bytes(message)
        rows.append(
            {
                "list_code": doc.code,
                "customer_id": doc.customer_id,
                "store_id": store_id,
                "pages": pages,
                "file": file_rel,
                "sha256": digest,
                "merged_file": str(merged_rel),
                "merged_first_page": first,
                "html_file": html_rel,
                "email_file": email_rel,
            }
        )
        if _COUNTER is not None and (i + 1) % 50 == 0:
            with _COUNTER.get_lock():
                _COUNTER.value += 50
    merged.save()
    if _COUNTER is not None:
        with _COUNTER.get_lock():
            _COUNTER.value += len(docs) % 50
    data = (target / merged_rel).read_bytes()
    return {
        "store_id": store_id,
        "lists": len(docs),
        "pages": page - 1,
        "file": str(merged_rel),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "rows": rows,
    }


def _render_job(job: tuple) -> dict:
    return render_store(*job)


def _render_stores(
    docs: list[ListDocument],
    target: Path,
    options: LayoutOptions,
    *,
    font_path: str,
    list_files: bool,
    workers: int,
    progress: Progress | None,
) -> list[dict]:
    """Render `docs` grouped by store into `target`; returns the stores' results, by store id."""
    by_store: dict[str, list[ListDocument]] = {}
    for doc in docs:
        by_store.setdefault(doc.store_id or _NO_STORE, []).append(doc)
    jobs = sorted(
        ((s, d, target, options, font_path, list_files) for s, d in by_store.items()), key=lambda job: -len(job[1])
    )
    if not jobs:
        return []  # nothing to print: no directory either
    (target / "print").mkdir(parents=True, exist_ok=True)
    if list_files:
        (target / "lists").mkdir(parents=True, exist_ok=True)
    if options.html_files:
        (target / "html").mkdir(parents=True, exist_ok=True)
    if options.email_files:
        (target / "mail").mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    total = len(docs)
    if workers == 1 or len(jobs) == 1 or total < _MIN_PARALLEL:
        results, done = [], 0
        for job in jobs:
            results.append(_render_job(job))
            done += len(job[1])
            if progress:
                progress("print", done, total)
    else:
        load_fonts(font_path)  # parse the fonts once, before forking
        ctx = mp.get_context("fork")
        counter = ctx.Value("q", 0)
        reported = 0  # each count once: a poll that finds no new list says nothing (a log's lines repeated)
        with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(counter,)) as pool:
            pending = pool.map_async(_render_job, jobs, chunksize=1)
            while not pending.ready():
                pending.wait(0.5)
                done = min(counter.value, total)
                if progress and done > reported:
                    progress("print", done, total)
                    reported = done
            results = pending.get()
        if progress and reported < total:
            progress("print", total, total)
    return sorted(results, key=lambda r: r["store_id"])


def render_documents(
    docs: list[ListDocument],
    target: str | Path,
    options: LayoutOptions,
    *,
    font_path: str = "",
    list_files: bool = True,
    workers: int = 0,
    progress: Progress | None = None,
) -> dict:
    """Render `docs` (in print order) into `target`: the PDFs, the web pages and messages, the manifests.

    Parameters
    ----------
    docs
        The documents to print, in print order (each store's merged file keeps it).
    target
        Directory of the files; created when there is something to write.
    options
        Page layout, and whether to write the HTML pages and the e-mail messages.
    font_path
        A TrueType file for the primary face (`printing.fonts.load_fonts`).
    list_files
        Also write one PDF per list (the merged files are always written).
    workers
        Processes rendering stores; 0 = one per core. Fewer than 200 lists or one store: this
        process.
    progress
        Called as ``progress("print", lists_done, lists_total)``.

    Returns
    -------
    dict
        lists, pages, pages_per_list ({"pages": lists}), html_files, email_files, stores (the
        rows of print/stores.csv with the merged file's size in "bytes"), manifest (its path;
        None when `docs` is empty and nothing was written).

    Raises
    ------
    FontError
        A font file is missing or unreadable.
    """
    target = Path(target)
    results = _render_stores(
        docs, target, options, font_path=font_path, list_files=list_files, workers=workers, progress=progress
    )
    if not results:
        return {
            "lists": 0,
            "pages": 0,
            "pages_per_list": {},
            "html_files": 0,
            "email_files": 0,
            "stores": [],
            "manifest": None,
        }
    rows = sorted(
        (row for r in results for row in r.pop("rows")), key=lambda row: (row["store_id"], row["merged_first_page"])
    )
    manifest = target / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with (target / "print" / "stores.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=STORE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)
    per_list: dict[int, int] = {}
    for row in rows:
        per_list[int(row["pages"])] = per_list.get(int(row["pages"]), 0) + 1
    return {
        "lists": len(rows),
        "pages": sum(r["pages"] for r in results),
        "pages_per_list": {str(k): per_list[k] for k in sorted(per_list)},
        "html_files": sum(1 for row in rows if row["html_file"]),
        "email_files": sum(1 for row in rows if row["email_file"]),
        "stores": results,
        "manifest": str(manifest),
    }
