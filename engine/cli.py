"""`listwise`: the command line, a thin layer over the library.

One hyphenated subcommand per verb, each with help and an example. Our errors become
one stderr line and exit status 1; `main(argv)` returns an int so tests call it directly.
Each area adds its commands in its own `_add_*` function below.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from pathlib import Path

from engine.errors import ConfigError, EngineError
from engine.progress import labelled, stderr_progress

__all__ = ["main"]


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from exc


def _settings(args: argparse.Namespace):
    from engine.config import load_settings

    return load_settings(args.config, database_url=args.database)


def _add_scale(p: argparse.ArgumentParser) -> None:
    """--executor, --scheduler, --partitions: override ``[scale]`` (README "Scale")."""
    p.add_argument(
        "--executor",
        choices=["local", "dask"],
        default=None,
        help="where the per-customer stages run: local processes or a dask cluster (default: settings, local)",
    )
    p.add_argument("--scheduler", default=None, help="dask scheduler address, e.g. tcp://10.0.0.5:8786")
    p.add_argument(
        "--partitions", type=int, default=None, help="customer partitions, a divisor of 64 (default: settings, 1)"
    )


def _scaled(settings, args: argparse.Namespace):  # noqa: ANN001, ANN202 - Settings -> Settings
    """`settings` with the command line's --executor, --scheduler and --partitions, validated."""
    import dataclasses

    from engine.config import validate_settings

    given = {k: getattr(args, k) for k in ("executor", "scheduler", "partitions") if getattr(args, k) is not None}
    if not given:
        return settings
    scaled = dataclasses.replace(settings, scale=dataclasses.replace(settings.scale, **given))
    return validate_settings(scaled, "command line")


_progress = stderr_progress  # its former name here (tests/engine/test_cli.py)


def _database(settings):  # noqa: ANN001, ANN202 - Settings -> engine.db.Gateway
    """The command's `engine.db.Gateway` (a context manager); refuses a database `init` has not made."""
    from engine.db import Gateway

    db = Gateway(settings.database_url)
    try:
        return db.require()
    except BaseException:
        db.close()
        raise


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="Create the database and the list-code secret",
        epilog="example: listwise init --database sqlite:///listwise.db",
    )
    p.set_defaults(run=_run_init)

    p = sub.add_parser(
        "import",
        help="Import stores, customers, products, transactions or deals",
        epilog="example: listwise import transactions demo/data/transactions/*.parquet",
    )
    p.add_argument("kind", choices=["stores", "customers", "products", "transactions", "deals", "tips"])
    p.add_argument("files", nargs="+", type=Path, help="CSV or Parquet files (or directories of them)")
    p.set_defaults(run=_run_import)

    p = sub.add_parser("history", help="The Parquet line-item history")
    hsub = p.add_subparsers(required=True)
    h = hsub.add_parser(
        "compact",
        help="Merge each bucket's open part files and delete orphan files (a killed import's)",
        description="Merge runs of neighbouring part files (in time) of each bucket holding more than --max-parts "
        "open files. A file of at least half of --merge-lines lines is settled and kept: no merge reads more than "
        "--merge-lines lines, so memory stays bounded however long the history.",
        epilog="example: listwise history compact",
    )
    h.add_argument("--max-parts", type=int, default=1, help="merge a bucket holding more open part files than this")
    h.add_argument(
        "--merge-lines",
        type=int,
        default=None,
        help="the most lines one merge reads (default: the setting history.merge_lines, 4194304)",
    )
    h.set_defaults(run=_run_history_compact)

    p = sub.add_parser("fixtures", help="Generate a synthetic chain (demo and test data)")
    fsub = p.add_subparsers(required=True)
    g = fsub.add_parser(
        "generate",
        help="Write a synthetic chain in the import format plus its truth",
        epilog="example: listwise fixtures generate --customers 2000 --weeks 26 --seed 0 --out demo/data",
    )
    g.add_argument("--customers", type=int, default=2000)
    g.add_argument("--weeks", type=int, default=26)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--start", type=_date, default=dt.date(2025, 1, 6), help="first day of history")
    g.add_argument("--format", choices=["csv", "parquet"], default="parquet", help="transactions format")
    g.add_argument("--out", type=Path, required=True)
    g.set_defaults(run=_run_generate)

    p = sub.add_parser(
        "demo", help="Generate a small chain, import it and run every stage", epilog="example: listwise demo --dir demo"
    )
    p.add_argument("--dir", type=Path, default=Path("demo"))
    p.add_argument("--customers", type=int, default=2000)
    p.add_argument("--weeks", type=int, default=26)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_run_demo)

    p = sub.add_parser(
        "settings",
        help="Print the effective settings, or check them against the catalogue",
        epilog="example: listwise settings --config listwise.toml; listwise settings check",
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=["show", "check"],
        default="show",
        help="show (default): every setting's effective value; check: what each household group "
        "and campaign pattern matches in the imported catalogue (exit 1 if one matches nothing)",
    )
    p.set_defaults(run=_run_settings)


def _run_init(args: argparse.Namespace) -> int:
    from engine.chain_key import bind_secret, require_existing_secret
    from engine.config import redact_url, resolve_secret
    from engine.db import Gateway, init_schema

    settings = _settings(args)
    with Gateway(settings.database_url) as db:
        init_schema(db.engine, history_path=settings.history.path or None, buckets=settings.history.buckets)
        try:
            secret = resolve_secret(settings)
        except ConfigError:
            require_existing_secret(db.engine)  # never mint a new key for a database that has one
            secret = resolve_secret(settings, create=True)
        bind_secret(db.engine, secret)
    print(f"initialised {redact_url(settings.database_url)}")
    return 0


def _run_history_compact(args: argparse.Namespace) -> int:
    from engine.history_store import compact

    if args.max_parts < 1:
        raise ConfigError(f"--max-parts must be >= 1 (got {args.max_parts})")
    if args.merge_lines is not None and args.merge_lines < 2:
        raise ConfigError(f"--merge-lines must be >= 2 (got {args.merge_lines})")
    settings = _settings(args)
    merge_lines = settings.history.merge_lines if args.merge_lines is None else args.merge_lines
    with _database(settings) as db:
        print(compact(db, max_parts=args.max_parts, merge_lines=merge_lines).describe())
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from engine.ingest import import_files

    settings = _settings(args)
    report = import_files(
        settings.database_url,
        args.kind,
        args.files,
        progress=stderr_progress(not args.quiet),
        timezone=settings.timezone,
        max_parts=settings.history.max_parts,
        merge_lines=settings.history.merge_lines,
    )
    for line in report:
        print(line)
    return 0


def _run_generate(args: argparse.Namespace) -> int:
    from engine.sample_chain import generate

    progress = stderr_progress(not args.quiet)
    summary = generate(
        args.out,
        customers=args.customers,
        weeks=args.weeks,
        seed=args.seed,
        start=args.start,
        fmt=args.format,
        progress=labelled(progress, "customers"),
    )
    for key, value in summary.items():
        print(f"{key}: {value}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from engine.demo import run_demo

    for line in run_demo(
        args.dir, customers=args.customers, weeks=args.weeks, seed=args.seed, progress=stderr_progress(not args.quiet)
    ):
        print(line)
    return 0


def _run_settings(args: argparse.Namespace) -> int:
    import json

    settings = _settings(args)
    if args.action == "check":
        return _check_settings(settings)
    from engine.config import public_settings

    print(json.dumps(public_settings(settings), indent=2, default=str))
    return 0


def _check_settings(settings) -> int:  # noqa: ANN001 - Settings
    """Each household group and campaign with the categories it matched; warnings on stderr."""
    from engine.categories import format_matches, resolve_categories

    with _database(settings) as db:
        products = db.products()
    if products.height == 0:
        raise ConfigError("the catalogue is empty: import products before 'settings check'")
    _, matches = resolve_categories(settings, products)
    failed = False
    for line in format_matches(matches):
        if line.startswith("warning:"):
            failed = True
            print(line, file=sys.stderr)
        else:
            print(line)
    return 1 if failed else 0


def _add_cycles(sub: argparse._SubParsersAction) -> None:
    """profile, customers (cycles/ and engine/profiles.py)."""
    p = sub.add_parser(
        "profile",
        help="Per customer x category: purchase cycle, next purchase, brand cell, volume",
        epilog="example: listwise profile --as-of 2025-07-07 --window-days 14 --out profile.parquet",
    )
    p.add_argument("--as-of", type=_date, required=True, help="reads only history before this day")
    p.add_argument("--window-days", type=int, default=None, help="window of p_buy_in_window (default: settings, 14)")
    p.add_argument("--out", type=Path, required=True, help="Parquet or CSV, by extension")
    _add_scale(p)
    p.set_defaults(run=_run_profile)

    p = sub.add_parser(
        "customers",
        help="Per customer: RFM, ABC, value tier, CLV, lifecycle, share of wallet",
        epilog="example: listwise customers --as-of 2025-07-07 --out customers.csv",
    )
    p.add_argument("--as-of", type=_date, required=True, help="reads only history before this day")
    p.add_argument("--out", type=Path, required=True, help="Parquet or CSV, by extension")
    _add_scale(p)
    p.set_defaults(run=_run_customers)


def _run_profile(args: argparse.Namespace) -> int:
    from engine.profiles import write_profile

    rows = write_profile(
        _scaled(_settings(args), args), args.as_of, args.window_days, args.out, progress=stderr_progress(not args.quiet)
    )
    print(f"{rows:,} customer x category rows written to {args.out}")
    return 0


def _run_customers(args: argparse.Namespace) -> int:
    from engine.profiles import write_customers

    rows = write_customers(
        _scaled(_settings(args), args), args.as_of, args.out, progress=stderr_progress(not args.quiet)
    )
    print(f"{rows:,} customers written to {args.out}")
    return 0


def _add_batch(sub: argparse._SubParsersAction) -> None:
    """batch run, batch print (coupons/, engine/batch.py, printing/)."""
    p = sub.add_parser("batch", help="Run the biweekly batch of lists and offers, or print its lists")
    bsub = p.add_subparsers(required=True)
    r = bsub.add_parser(
        "run",
        help="Qualify customers, draw the hold-out, build and store lists and offers",
        epilog="example: listwise batch run --period-start 2025-07-07 --no-print",
    )
    r.add_argument(
        "--period-start",
        type=_date,
        default=None,
        help="first day of the period (default: an unfinished period, else the one after the last batch)",
    )
    r.add_argument("--out", type=Path, default=None, help="batch files go to OUT/<period-start>/ (default: settings)")
    r.add_argument("--no-print", action="store_true", help="do not render the lists' PDFs")
    r.add_argument(
        "--no-report",
        action="store_true",
        help="do not write the marketing report (report.html, report.pdf) beside the batch files",
    )
    r.add_argument("--json", action="store_true", help="print the summary as JSON instead of text")
    _add_scale(r)

    def run(args: argparse.Namespace) -> int:
        import json

        from engine.batch import format_summary, run_batch
        from engine.errors import NothingToDo

        settings = _scaled(_settings(args), args)
        with _database(settings) as db:
            try:
                summary = run_batch(
                    settings, args.period_start, args.out, progress=stderr_progress(not args.quiet), gateway=db
                )
            except NothingToDo as exc:
                # --json: stdout carries one JSON document and nothing else, whatever happens
                print(json.dumps({"status": "nothing to do", "message": str(exc)}) if args.json else exc)
                return 0
            out = args.out or Path(settings.batch.out_dir)
            print(json.dumps(summary, indent=2) if args.json else format_summary(summary, out))
            code = 0 if args.no_print else _print_lists(args, settings, summary["batch_id"], quiet_stdout=args.json)
            if code == 0 and not args.no_report:
                from engine.report import write_report

                write_report(settings, Path(out) / summary["period_start"] / "report", summary["batch_id"], gateway=db)
        return code

    r.set_defaults(run=run)

    c = bsub.add_parser(
        "cancel",
        help="Withdraw a batch's lists (refused once an offer was redeemed)",
        epilog="example: listwise batch cancel 3",
    )
    c.add_argument("batch_id", type=int, help="the batch to cancel")

    def cancel(args: argparse.Namespace) -> int:
        from engine.batch import cancel_batch

        print(cancel_batch(_settings(args), args.batch_id))
        return 0

    c.set_defaults(run=cancel)

    q = bsub.add_parser(
        "print",
        help="Render a batch's lists as barcoded PDFs",
        epilog="example: listwise batch print --batch 3 --out batches",
    )
    q.add_argument("--batch", type=int, default=None, help="batch id (default: the last done batch)")
    q.add_argument("--out", type=Path, default=None, help="directory of batch files (default: settings)")

    def print_(args: argparse.Namespace) -> int:
        from engine.errors import StateError

        settings = _settings(args)
        batch_id = args.batch
        if batch_id is None:
            with _database(settings) as db:
                batch_id = db.latest_batch("done")
            if batch_id is None:
                raise StateError("no finished batch to print: run 'listwise batch run' first")
        return _print_lists(args, settings, int(batch_id))

    q.set_defaults(run=print_)


def _print_lists(
    args: argparse.Namespace,
    settings,
    batch_id: int,  # noqa: ANN001 - Settings
    quiet_stdout: bool = False,
) -> int:
    """Render the batch's PDFs; `quiet_stdout`: its report line goes to stderr (``batch run --json``)."""
    try:
        from engine.printjob import print_batch
    except ImportError:
        print("printing is not installed yet: lists are stored but no PDFs were made", file=sys.stderr)
        return 0
    out = args.out or Path(settings.batch.out_dir)
    result = print_batch(settings, batch_id, out, stderr_progress(not args.quiet))
    if result is not None:
        print(
            result["message"] if result["lists"] == 0 else result,  # an empty batch: one line, exit 0
            file=sys.stderr if quiet_stdout else sys.stdout,
        )
    return 0


def _add_checkout(sub: argparse._SubParsersAction) -> None:
    """serve, keys, checkout (engine/checkout.py, engine/keys.py, engine/server.py)."""
    p = sub.add_parser(
        "serve",
        help="Run the checkout service (HTTP, OpenAPI at /docs)",
        epilog="example: listwise serve --host 127.0.0.1 --port 8080",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1, help="server processes (PostgreSQL: up to the cores)")
    p.set_defaults(run=_run_serve)

    p = sub.add_parser("keys", help="Create or revoke a store's API key for the checkout service")
    ksub = p.add_subparsers(required=True)
    k = ksub.add_parser(
        "create", help="Print a new API key acting for one store", epilog="example: listwise keys create --store 12"
    )
    k.add_argument("--store", required=True, help="store_id the key acts for")
    k.set_defaults(run=_run_keys_create)
    k = ksub.add_parser("revoke", help="End an API key", epilog="example: listwise keys revoke lw_3xQ...")
    k.add_argument("key")
    k.set_defaults(run=_run_keys_revoke)
    _add_keys_list(ksub)
    k = ksub.add_parser(
        "rotate",
        help="Replace the list-code secret; lists printed before still scan until they expire",
        epilog="example: listwise keys rotate  (secret from the environment: "
        "LISTWISE_NEW_SECRET=<new key> listwise keys rotate)",
    )
    k.set_defaults(run=_run_keys_rotate)

    p = sub.add_parser(
        "checkout",
        help="Check a basket out without a server (as POST /v1/checkout)",
        epilog="example: listwise checkout --file basket.json",
    )
    p.add_argument("--file", type=Path, required=True, help="the JSON body of POST /v1/checkout ('-': stdin)")
    p.set_defaults(run=_run_checkout)


def _run_serve(args: argparse.Namespace) -> int:
    from engine.server import serve

    settings = _settings(args)
    print(f"listwise checkout on http://{args.host}:{args.port} (OpenAPI at /docs)", file=sys.stderr)
    serve(settings, args.host, args.port, workers=args.workers)
    return 0


def _run_keys_create(args: argparse.Namespace) -> int:
    from engine.keys import create_key

    with _database(_settings(args)) as db:
        print(create_key(db.engine, args.store))
    return 0


def _run_keys_revoke(args: argparse.Namespace) -> int:
    from engine.keys import revoke_key

    with _database(_settings(args)) as db:
        print(f"revoked a key of store {revoke_key(db.engine, args.key)}", file=sys.stderr)
    return 0


def _run_checkout(args: argparse.Namespace) -> int:
    import json

    from engine.chain_key import verify_secret
    from engine.checkout import checkout
    from engine.config import resolve_secret
    from engine.errors import InputError

    settings = _settings(args)
    try:
        body = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
    except OSError as exc:
        raise InputError(f"{args.file}: {exc.strerror}") from exc
    with _database(settings) as db:
        secret = resolve_secret(settings)
        verify_secret(db.engine, secret)
        answer = checkout(db.engine, secret, body, settings.checkout, timezone=settings.timezone)
    print(json.dumps(answer, indent=2))
    return 0


def _add_keys_list(ksub: argparse._SubParsersAction) -> None:
    k = ksub.add_parser(
        "list", help="Key ids, stores, created and revoked times (never the keys)", epilog="example: listwise keys list"
    )
    k.set_defaults(run=_run_keys_list)


def _run_keys_list(args: argparse.Namespace) -> int:
    from engine.keys import list_keys

    with _database(_settings(args)) as db:
        keys = list_keys(db.engine)
    print(f"{'key_id':>6}  {'store':<12} {'created (UTC)':<19}  revoked (UTC)")
    for k in keys:
        print(f"{k['key_id']:>6}  {k['store_id']:<12} {k['created_at']:<19}  {k['revoked_at'] or '-'}")
    if not keys:
        print("no API keys yet: listwise keys create --store STORE", file=sys.stderr)
    return 0


def _run_keys_rotate(args: argparse.Namespace) -> int:
    """Rotate the list-code key (engine.chain_key.rotate_secret).

    A secret from the environment or listwise.toml: the operator brings the new one in
    LISTWISE_NEW_SECRET (never on the command line, which others can read). The secret file:
    a new random key goes to ``<file>.new`` (0600) first, then into the database, then replaces
    the file, the old file kept as ``<file>.<fingerprint>.retired``; a rotation killed between
    the database and the file is finished by running the command again.
    """
    import secrets

    from engine.chain_key import fingerprint, rotate_secret, stored_fingerprint
    from engine.config import resolve_secret
    from engine.db import connect, require_schema
    from engine.faults import fault_point

    settings = _settings(args)
    engine = connect(settings.database_url)
    try:
        require_schema(engine)
        if settings.secret:
            new = os.environ.get("LISTWISE_NEW_SECRET", "").strip()
            if not new:
                raise ConfigError(
                    "the secret comes from LISTWISE_SECRET or listwise.toml: give the new key in LISTWISE_NEW_SECRET"
                )
            done = rotate_secret(engine, resolve_secret(settings), new.encode())
            after = "now set LISTWISE_SECRET to the new key (LISTWISE_NEW_SECRET) for every listwise process"
        else:
            path = Path(settings.secret_file)
            pending = path.with_name(path.name + ".new")
            if pending.exists():
                new = pending.read_text(encoding="utf-8").strip()
                if not new or stored_fingerprint(engine) != fingerprint(new.encode()):
                    raise ConfigError(
                        f"{pending} is left from a rotation that never reached the database: "
                        "delete it and run 'listwise keys rotate' again"
                    )
                done = None  # the database has it: only the file is left to replace
            else:
                current = resolve_secret(settings)
                new = secrets.token_hex(32)
                fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(new + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    done = rotate_secret(engine, current, new.encode())
                except BaseException:
                    pending.unlink()
                    raise
            fault_point("rotate-after-commit")
            old = path.read_text(encoding="utf-8").strip() if path.exists() else ""
            if old and old != new:  # kept for a database backup from before the rotation
                retired = path.with_name(f"{path.name}.{fingerprint(old.encode())}.retired")
                if not retired.exists():
                    os.link(path, retired)
            os.replace(pending, path)
            if done is None:
                print(
                    f"finished the interrupted rotation: {path} holds the key of fingerprint "
                    f"{fingerprint(new.encode())}"
                )
                return 0
            after = (
                f"{path} holds the new key; the old one is kept in {path.name}.{done['previous']}.retired: "
                f"keep it with the database backups until {done['valid_to']}"
            )
    finally:
        engine.dispose()
    print(
        f"list-code key rotated: fingerprint {done['previous']} -> {done['fingerprint']}; the retired key still "
        f"verifies lists up to id {done['last_list_id']} until {done['valid_to']}"
        + (f"; keys no longer accepted: {', '.join(done['dropped'])}" if done["dropped"] else "")
    )
    print(f"{after}; restart the checkout service now (it checks codes with the key it started with)", file=sys.stderr)
    return 0


def _add_lists(sub: argparse._SubParsersAction) -> None:
    """lists show / revoke / reprint (engine/lists.py): one customer's list at the service desk."""
    p = sub.add_parser("lists", help="Show, revoke or reprint one customer's list")
    lsub = p.add_subparsers(required=True)
    q = lsub.add_parser(
        "show",
        help="A customer's lists and their offers' state (card masked, no name)",
        epilog="example: listwise lists show C1042",
    )
    q.add_argument("customer", help="customer_id, as in the customers file")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.set_defaults(run=_run_lists_show)
    q = lsub.add_parser(
        "revoke",
        help="Revoke the list a code names: the checkout refuses it from now on",
        epilog="example: listwise lists revoke 000000104211742957",
    )
    q.add_argument("code", help="the code printed under the barcode")
    q.set_defaults(run=_run_lists_revoke)
    q = lsub.add_parser(
        "reprint",
        help="Give a customer's current list a new code (the old one is refused)",
        epilog="example: listwise lists reprint C1042",
    )
    q.add_argument("customer", help="customer_id, as in the customers file")
    q.set_defaults(run=_run_lists_reprint)


def _lists_context(args: argparse.Namespace):  # noqa: ANN202
    """(settings, the command's Gateway, the list-code secret checked against the database)."""
    from engine.chain_key import verify_secret
    from engine.config import resolve_secret

    settings = _settings(args)
    db = _database(settings)
    try:
        secret = resolve_secret(settings)
        verify_secret(db.engine, secret)
    except BaseException:
        db.close()
        raise
    return settings, db, secret


def _run_lists_show(args: argparse.Namespace) -> int:
    import json

    from engine.lists import show
    from engine.values import dollars

    settings = _settings(args)
    with _database(settings) as db:
        found = show(db.engine, args.customer, timezone=settings.timezone)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print(
        f"customer {found['customer_id']}  card {found['card'] or '-'}  "
        f"current list {found['current_list_id'] or 'none'}"
    )
    for lst in found["lists"]:
        print(
            f"list {lst['list_id']}  code {lst['code']}  batch {lst['batch_id']}  "
            f"{lst['valid_from']}..{lst['valid_to']}  {lst['status']}"
        )
        for o in lst["offers"]:
            what = o["sku"] or (f"category {o['category']}" if o["category"] else "basket")
            print(
                f"  {o['line_no']:>2} {o['kind']:<10} {what:<20} {dollars(o['discount_cents']):>8} off  "
                f"used {o['redeemed']}/{o['max_uses']}"
            )
    return 0


def _run_lists_revoke(args: argparse.Namespace) -> int:
    from engine.lists import revoke

    _, db, secret = _lists_context(args)
    with db:
        done = revoke(db.engine, secret, args.code)
    word = "was already revoked" if done["already_revoked"] else "revoked"
    print(f"list {done['list_id']} of customer {done['customer_id']} {word}")
    return 0


def _run_lists_reprint(args: argparse.Namespace) -> int:
    from engine.lists import reprint

    settings, db, secret = _lists_context(args)
    with db:
        done = reprint(db.engine, secret, args.customer, timezone=settings.timezone)
    print(
        f"list {done['old_list_id']} of customer {done['customer_id']} is now list {done['list_id']}, "
        f"valid {done['valid_from']}..{done['valid_to']}; its old code is refused from now",
        file=sys.stderr,
    )
    print(done["code"])
    return 0


def _manufacturer_period_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manufacturer", required=True, help="manufacturer_id, as in the products file")
    p.add_argument("--from", dest="date_from", type=_date, required=True, help="first day of the period")
    p.add_argument("--to", dest="date_to", type=_date, required=True, help="last day of the period (included)")
    p.add_argument("--out", type=Path, required=True, help="directory for the files (created)")


def _add_extracts(sub: argparse._SubParsersAction) -> None:
    """extract, settle (engine/extracts.py)."""
    p = sub.add_parser(
        "extract",
        help="Write a manufacturer's anonymised results (Parquet, CSV, manifest.json)",
        epilog="example: listwise extract --manufacturer M003 --from 2025-03-03 --to 2025-03-16 "
        "--out extracts/M003 --panel",
    )
    _manufacturer_period_args(p)
    p.add_argument("--panel", action="store_true", help="also write the pseudonymous household panel")
    p.set_defaults(run=_run_extract)

    p = sub.add_parser(
        "settle",
        help="Settle a manufacturer's funded redemptions (CSV and a one-page PDF)",
        epilog="example: listwise settle --manufacturer M003 --from 2025-03-03 --to 2025-03-16 --out extracts/M003",
    )
    _manufacturer_period_args(p)
    p.set_defaults(run=_run_settle)


def _run_extract(args: argparse.Namespace) -> int:
    from engine.extracts import write_extract

    manifest = write_extract(
        _settings(args),
        args.manufacturer,
        args.date_from,
        args.date_to,
        args.out,
        progress=stderr_progress(not args.quiet),
        panel=args.panel,
    )
    for entry in manifest["files"]:
        print(f"{args.out / entry['name']}: {entry['rows']:,} rows")
    withheld = sum(manifest["withheld_rows"].values())
    print(f"groups of at least {manifest['min_group']} households; {withheld:,} rows withheld")
    return 0


def _run_settle(args: argparse.Namespace) -> int:
    from engine.extracts import write_settlement
    from engine.values import dollars

    summary = write_settlement(_settings(args), args.manufacturer, args.date_from, args.date_to, args.out)
    print(
        f"{summary['redemptions']:,} redemptions, {dollars(summary['amount_due_cents'])} due from "
        f"{args.manufacturer}; {args.out / 'settlement.pdf'}"
    )
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    """report (engine/report.py)."""
    p = sub.add_parser(
        "report",
        help="Charts of a batch and of the previous period's results (HTML, PDF, CSV)",
        epilog="example: listwise report --batch 3 --out reports/batch-3",
    )
    p.add_argument("--batch", type=int, default=None, help="batch id (default: the last done batch)")
    p.add_argument("--out", type=Path, required=True, help="directory for report.html, report.pdf and the CSVs")
    p.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from engine.report import write_report

    done = write_report(_settings(args), args.out, args.batch)
    results = (
        f"results of batch {done['results_batch_id']}"
        if done["results_batch_id"] is not None
        else "no results period yet"
    )
    print(
        f"report of batch {done['batch_id']} ({results}): {done['html']}, {done['pdf']} "
        f"({done['pages']} pages), {len(done['tables'])} tables"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="listwise",
        description="Personalised biweekly shopping lists and coupons for a supermarket chain.",
        epilog="Settings: listwise.toml in the working directory (or --config); "
        "LISTWISE_DATABASE_URL and LISTWISE_SECRET override it.",
    )
    parser.add_argument("--config", type=Path, default=None, help="settings file (default ./listwise.toml)")
    parser.add_argument("--database", default=None, help="database URL (default: settings, else sqlite:///listwise.db)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("--version", action="version", version=f"listwise {_version()}")
    sub = parser.add_subparsers(required=True, metavar="command")
    for add in (_add_data, _add_cycles, _add_batch, _add_checkout, _add_lists, _add_extracts, _add_report):
        add(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("listwise")
    except PackageNotFoundError:
        return "(not installed)"


# Options of the whole program, accepted before or after the subcommand ("listwise import -q ...").
_GLOBAL_FLAGS = {"-q", "--quiet"}
_GLOBAL_VALUES = {"--config", "--database"}


def _hoist_globals(argv: list[str]) -> list[str]:
    """`argv` with the global options moved before the subcommand (argparse wants them there)."""
    front, rest = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name = arg.split("=", 1)[0]
        if arg in _GLOBAL_FLAGS or (name in _GLOBAL_VALUES and "=" in arg):
            front.append(arg)
        elif arg in _GLOBAL_VALUES and i + 1 < len(argv):
            front.extend(argv[i : i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def _raised_at(exc: BaseException) -> str:
    """' at file:line' where `exc` was raised. An exception a local worker raised comes back re-raised
    by concurrent.futures, whose own line would be named: the worker's traceback, which it attaches
    as the cause's text, names the line that raised."""
    remote = getattr(exc.__cause__, "tb", None)
    # frame lines only (a message may quote a file and line of its own)
    found = re.findall(r'^  File "([^"]+)", line (\d+), in ', remote, re.MULTILINE) if isinstance(remote, str) else []
    if found:
        return f" at {Path(found[-1][0]).name}:{found[-1][1]}"
    where = exc.__traceback__
    while where is not None and where.tb_next is not None:
        where = where.tb_next
    return f" at {Path(where.tb_frame.f_code.co_filename).name}:{where.tb_lineno}" if where else ""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(_hoist_globals(list(sys.argv[1:] if argv is None else argv)))
    try:
        return args.run(args)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (listwise ... | head): no traceback; stdout goes nowhere from here on
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        if os.environ.get("LISTWISE_DEBUG"):
            raise
        place = _raised_at(exc)
        print(
            f"error: internal error ({type(exc).__name__}{place}): {str(exc).splitlines()[0] if str(exc) else ''}"
            f" — please report it; LISTWISE_DEBUG=1 shows the traceback",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
