"""Settings: one TOML file (`listwise.toml`), every key with a documented default.

Each section is a frozen dataclass; the field's comment is its documentation, and
`listwise settings` prints the effective values. Unknown sections or keys are an error,
so a typo never silently falls back to a default. `LISTWISE_DATABASE_URL` and
`LISTWISE_SECRET` from the environment override the file.

The pure packages own their parameters and defaults; this module composes them, with the
same keys: ``[cycles]`` is a `cycles.params.ProfileParams` (plus `partitions` and
`p_buy_model`, the engine's), ``[value]`` a `cycles.params.ValueParams`, ``[offers]`` a
`coupons.rules.OfferRules`, ``[[campaigns]]`` `coupons.rules.Campaign` tables, ``[batch]`` a
`coupons.rules.BatchRules` (plus the engine's period, first period and output directory). The
other sections are the engine's and printing's, defined below. `validate_settings` checks
every range, the packages' own through their ``validate()``, and names the section and key.

Example ``listwise.toml``::

    chain_name = "Fresh Fields Market"
    database_url = "sqlite:///listwise.db"

    [batch]
    threshold_cents = 2500
    holdout_share = 0.05

    [[campaigns]]
    category = "ANALGESIC*"           # a case-insensitive pattern (see `coupons.categories`)
    depth_by_tier = { high = 0.40, mid = 0.25, low = 0.10 }
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coupons.exceptions import RulesError
from coupons.rules import DEFAULT_CAMPAIGNS, BatchRules, Campaign, OfferRules, PlanRules
from cycles.exceptions import ParamsError
from cycles.params import ProfileParams, ValueParams
from engine.errors import ConfigError

__all__ = [
    "Settings",
    "BatchSettings",
    "CycleSettings",
    "ValueSettings",
    "OfferSettings",
    "Campaign",
    "PrintSettings",
    "CheckoutSettings",
    "ExtractSettings",
    "HistorySettings",
    "ScaleSettings",
    "HISTORY_BUCKETS",
    "EXECUTORS",
    "partitions_of",
    "load_settings",
    "resolve_secret",
    "redact_url",
    "public_settings",
    "validate_settings",
    "DEFAULT_DATABASE_URL",
    "from_table",
]

DEFAULT_DATABASE_URL = "sqlite:///listwise.db"

# The names these sections had when engine defined them; engine/ itself uses the packages' names.
OfferSettings = OfferRules
ValueSettings = ValueParams


@dataclass(frozen=True)
class BatchSettings(BatchRules):
    """``[batch]``: the list rules of `coupons.rules.BatchRules` (threshold_cents, qualifying_weeks,
    holdout_share, max_offers, chain_budget_cents, max_uses) and the engine's own keys below."""

    period_days: int = 14  # length of a list period
    first_period_start: str = ""  # ISO date of the first period; "" = the Monday after the last purchase
    out_dir: str = "batches"  # batch files go to <out_dir>/<period-start>/


@dataclass(frozen=True)
class CycleSettings(ProfileParams):
    """``[cycles]``: the profile's parameters of `cycles.params.ProfileParams` (lookback_weeks,
    window_days, min_occasions, national_max_store_share, store_min_store_share, volume_cuts,
    brand_prior_occasions) and how the engine runs it (`engine.profiles`)."""

    partitions: int = 1  # older name of [scale] partitions (used when that is 1)
    # p_buy_in_window from 'ranker' (cycles.ranker, learnt from the chain's past windows; beats frequency on
    # real data) or 'renewal' (the purchase-cycle model alone); next_expected_on is the renewal model's either way
    p_buy_model: str = "ranker"


# The history's customer buckets (customer_key % 64): a partition count must divide it, so that a
# partition is whole buckets (the history store's layout; see README "Scale").
HISTORY_BUCKETS = 64
EXECUTORS = ("local", "dask")


@dataclass(frozen=True)
class ScaleSettings:
    """``[scale]``: how the batch's per-customer stages (profile, customer value) are spread.

    Partition p of n is the customers with customer_key % n == p; the results do not depend on n
    or on the executor (README "Scale")."""

    executor: str = "local"  # 'local' (a process pool on this machine) or 'dask' (a dask.distributed cluster)
    scheduler: str = ""  # the dask scheduler's address, e.g. 'tcp://10.0.0.5:8786' (needed by executor 'dask')
    partitions: int = 1  # customer partitions (customer_key % n); n divides 64, the history's buckets
    workers: int = 0  # 'local': processes at once (0 = one per CPU core, at most `partitions`)
    # customers the global quantities are fitted on: whole strata of customer_key % 64 in order, the last one
    # trimmed by a key hash (so the globals read only the first strata's lines); all when fewer
    sample_customers: int = 5_000


@dataclass(frozen=True)
class PrintSettings:
    page_size: str = "letter"  # 'letter' or 'a4'
    aisle_order: tuple[str, ...] = ()  # departments in the store's aisle order; others follow A-Z
    font_path: str = ""  # TrueType font to embed; "" = the bundled one
    barcode_module_pt: float = 1.44  # Code 128 module width: 20 mil, whole dots at 150/200/300/600 dpi
    list_files: bool = True  # also write one PDF per list (the merged print files are always written)
    workers: int = 0  # processes that render a batch; 0 = one per core
    # the needs section: categories the customer likely buys in the period (`coupons.needs`), at least this
    # p_buy_in_window, at most this many lines a list (0 = no needs section)
    needs_min_p_buy: float = 0.5
    needs_max_lines: int = 10
    # one line of terms under every page; {valid_from} and {valid_to} are the list's period
    terms: str = (
        "Specials valid {valid_from} to {valid_to} on the item shown, one use a visit; not exchangeable for cash."
    )
    opt_out: str = "No more lists? Tell any cashier and we will stop sending them."  # how to opt out
    html_files: bool = True  # also write each printed list as a self-contained HTML page
    email_files: bool = True  # and an RFC 5322 message (.eml, written, not sent) for customers with an e-mail
    email_from: str = ""  # From: of those messages; "" = "<chain_name> <lists@localhost>"


@dataclass(frozen=True)
class CheckoutSettings:
    max_body_bytes: int = 256 * 1024  # larger request bodies are refused (413) before parsing
    max_items: int = 500  # items in one checkout, at most
    # A basket whose timestamp is further than this from the server's clock (in the store's zone) is
    # refused (clock_skew). 24 h lets a store-and-forward lane send yesterday's baskets after an outage;
    # 0 = no such refusal. Offers are judged at the server's clock either way (clock_tolerance_minutes).
    max_clock_skew_minutes: int = 24 * 60
    max_codes: int = 20  # list codes in one checkout, at most
    max_line_quantity: float = 1000.0  # a line above this many units (or kg) is refused as absurd
    max_line_amount_cents: int = 1_000_000  # a line above this ($10,000) is refused as absurd
    key_cache_seconds: float = 0.0  # the service remembers a key's store this long; 0 = look up every request
    wal_checkpoint_seconds: float = 1.0  # SQLite: the service checkpoints the WAL in the background this often;
    # 0 = SQLite's own checkpoint inside a commit (a lane waits for it)
    # Offers are judged at the basket's timestamp only as far as it lies within this of the server's
    # clock; beyond, at the server's clock minus/plus this (a backdated basket gets no expired offer).
    clock_tolerance_minutes: int = 15
    # Failed code checks (bad_check) a key, and a store's lane, may make per `failed_checks_window_seconds`
    # before requests carrying codes get 429 with Retry-After (a token bucket per process: with N worker
    # processes the chain-wide limit is N times this). 60 per 10 min: ~16 years to forge one 8-digit check.
    max_failed_checks_per_key: int = 60
    max_failed_checks_per_lane: int = 10
    failed_checks_window_seconds: float = 600.0
    # A write that cannot get the database's write lock within this many seconds is answered 503 with
    # Retry-After (an import or a batch holds it); the service's other requests do not wait for it.
    lock_wait_seconds: float = 30.0


@dataclass(frozen=True)
class ExtractSettings:
    min_group: int = 50  # smallest group a manufacturer may see (never below 10)
    confidence: float = 0.95  # two-sided level of the lift intervals (treated vs hold-out)


@dataclass(frozen=True)
class HistorySettings:
    """``[history]``: the Parquet line-item history (`engine.history_store`); read by ``listwise init``,
    which records path and buckets in the database (every later command finds them there)."""

    # directory of the part files; "" = beside a SQLite file (listwise.db -> listwise.history/); required
    # on PostgreSQL (a directory every process that reads history sees, e.g. a shared mount). Relative: to
    # the SQLite file's directory. Set it and run `listwise init` again after moving the directory.
    path: str = ""
    # customer_key % buckets names a customer's bucket; fixed when the database is created
    buckets: int = HISTORY_BUCKETS
    max_parts: int = 16  # an import compacts a bucket holding more open part files than this
    # the most lines one merge of the compaction reads (~190 bytes a line at its peak, four at once); a file
    # of half as many is settled, never merged again (`engine.history_store._merge_plan`)
    merge_lines: int = 1 << 22


@dataclass(frozen=True)
class Settings:
    chain_name: str = "Fresh Fields Market"
    # IANA zone of the stores' local time (e.g. "America/New_York"); a store's own `timezone` column
    # overrides it. Timestamps are kept as store-local wall-clock time; an imported offset is converted.
    # The default UTC suits only a chain whose exports carry no offsets or whose stores keep UTC.
    timezone: str = "UTC"
    database_url: str = DEFAULT_DATABASE_URL
    secret: str = ""  # HMAC key for list codes; prefer LISTWISE_SECRET
    secret_file: str = "listwise.secret"  # where `listwise init` keeps a generated secret
    batch: BatchSettings = BatchSettings()
    cycles: CycleSettings = CycleSettings()
    value: ValueParams = ValueParams()
    offers: OfferRules = OfferRules()
    campaigns: tuple[Campaign, ...] = DEFAULT_CAMPAIGNS
    printing: PrintSettings = PrintSettings()
    checkout: CheckoutSettings = CheckoutSettings()
    extracts: ExtractSettings = ExtractSettings()
    history: HistorySettings = HistorySettings()
    scale: ScaleSettings = ScaleSettings()

    def plan_rules(self) -> PlanRules:
        """What the offer plan reads of these settings (`coupons.build.plan_offers`)."""
        return PlanRules(
            margin_share=self.value.margin_share, offers=self.offers, campaigns=self.campaigns, batch=self.batch
        )


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None  # a required field (Campaign.category): any str


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Dataclass `cls` from a TOML table, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {data!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        default = _default(known[key])
        if key == "campaigns":
            value = tuple(_build(Campaign, c, f"{where}.campaigns[{i}]") for i, c in enumerate(value))
        elif dataclasses.is_dataclass(default):
            value = _build(type(default), value, f"{where}.{key}")
        elif isinstance(default, tuple):
            if not isinstance(value, list):
                raise ConfigError(f"{where}.{key}: expected a list, got {value!r}")
            value = tuple(value)
        elif default is not None:
            numeric_ok = isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)
            if type(value) is not type(default) and not numeric_ok:
                raise ConfigError(f"{where}.{key}: expected {type(default).__name__}, got {value!r}")
            value = float(value) if numeric_ok else value
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def from_table(cls: type, data: dict[str, Any], where: str) -> Any:
    """Settings dataclass `cls` (`Settings` or one of its tables) from a TOML table, or a dict of
    the same shape (JSON), refusing unknown keys and wrong types; `where` names it in errors."""
    return _build(cls, data, where)


def load_settings(path: str | Path | None = None, database_url: str | None = None) -> Settings:
    """Effective settings: defaults < listwise.toml < environment < explicit arguments.

    `path` None reads ``./listwise.toml`` when it exists.
    """
    data: dict[str, Any] = {}
    toml_path = Path(path) if path else Path("listwise.toml")
    if path and not toml_path.exists():
        raise ConfigError(f"{toml_path}: settings file not found")
    if toml_path.exists():
        try:
            data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{toml_path}: {exc}") from exc
    settings = _build(Settings, data, str(toml_path))
    overrides = {}
    if os.environ.get("LISTWISE_DATABASE_URL"):
        overrides["database_url"] = os.environ["LISTWISE_DATABASE_URL"]
    if os.environ.get("LISTWISE_SECRET"):
        overrides["secret"] = os.environ["LISTWISE_SECRET"]
    if database_url:
        overrides["database_url"] = database_url
    return validate_settings(dataclasses.replace(settings, **overrides), str(toml_path))


def _fraction(lo_open: bool = False, hi_open: bool = False):
    def ok(v: float) -> bool:
        return (v > 0 if lo_open else v >= 0) and (v < 1 if hi_open else v <= 1)

    return ok


def _zone_ok(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _iso_or_empty(text: str) -> bool:
    import datetime as dt

    try:
        return text == "" or bool(dt.date.fromisoformat(text))
    except ValueError:
        return False


def _divides_buckets(n: object) -> bool:
    return isinstance(n, int) and n >= 1 and HISTORY_BUCKETS % n == 0


def partitions_of(settings: Settings) -> int:
    """The partition count in force: ``[scale] partitions``, else the older ``[cycles] partitions``."""
    return settings.scale.partitions if settings.scale.partitions != 1 else settings.cycles.partitions


def validate_settings(settings: Settings, where: str = "settings") -> Settings:
    """`settings` unchanged, or `ConfigError` naming the first key out of its range.

    A value out of range would otherwise run: ``holdout_share = 1.5`` gave a batch of no lists.
    The packages' parameters are checked by their own ``validate()`` (`cycles.params`,
    `coupons.rules`); their error becomes ours here, with the section in the key's name.
    """
    b, c, x, k, p = settings.batch, settings.cycles, settings.extracts, settings.checkout, settings.printing
    positive = lambda n: n >= 1
    non_negative = lambda n: n >= 0
    _check_rules(
        where,
        [
            ("timezone", settings.timezone, _zone_ok, "an IANA time zone name such as 'America/New_York'"),
            ("batch.period_days", b.period_days, positive, ">= 1"),
        ],
    )
    _check_params(where, "batch", b)
    _check_rules(
        where,
        [
            ("batch.first_period_start", b.first_period_start, _iso_or_empty, "an ISO date (YYYY-MM-DD) or empty"),
        ],
    )
    _check_params(where, "cycles", c)
    _check_rules(
        where,
        [
            ("cycles.partitions", c.partitions, _divides_buckets, f"a divisor of {HISTORY_BUCKETS} (1, 2, 4, ... 64)"),
            (
                "scale.partitions",
                settings.scale.partitions,
                _divides_buckets,
                f"a divisor of {HISTORY_BUCKETS} (1, 2, 4, ... 64)",
            ),
            ("scale.executor", settings.scale.executor, lambda e: e in EXECUTORS, "'local' or 'dask'"),
            ("scale.workers", settings.scale.workers, non_negative, ">= 0 (0 = one per core)"),
            ("scale.sample_customers", settings.scale.sample_customers, lambda n: n >= 100, ">= 100"),
            ("cycles.p_buy_model", c.p_buy_model, lambda m: m in ("ranker", "renewal"), "'ranker' or 'renewal'"),
        ],
    )
    _check_params(where, "value", settings.value)
    _check_params(where, "offers", settings.offers)
    _check_rules(
        where,
        [
            ("printing.needs_min_p_buy", p.needs_min_p_buy, _fraction(), "in [0, 1]"),
            ("printing.needs_max_lines", p.needs_max_lines, non_negative, ">= 0"),
            ("extracts.min_group", x.min_group, lambda n: n >= 10, ">= 10"),
            ("extracts.confidence", x.confidence, _fraction(lo_open=True, hi_open=True), "in (0, 1)"),
            ("checkout.max_items", k.max_items, positive, ">= 1"),
            ("checkout.max_codes", k.max_codes, positive, ">= 1"),
            ("checkout.max_clock_skew_minutes", k.max_clock_skew_minutes, non_negative, ">= 0"),
            (
                "checkout.clock_tolerance_minutes",
                k.clock_tolerance_minutes,
                lambda n: 0 <= n <= 24 * 60,
                "in [0, 1440] (minutes)",
            ),
            ("checkout.max_failed_checks_per_key", k.max_failed_checks_per_key, positive, ">= 1"),
            ("checkout.max_failed_checks_per_lane", k.max_failed_checks_per_lane, positive, ">= 1"),
            (
                "checkout.failed_checks_window_seconds",
                k.failed_checks_window_seconds,
                lambda n: 1 <= n <= 86400,
                "in [1, 86400] (seconds)",
            ),
            ("checkout.lock_wait_seconds", k.lock_wait_seconds, lambda n: 0 < n <= 600, "in (0, 600] (seconds)"),
            ("history.buckets", settings.history.buckets, lambda n: 1 <= n <= 4096, "in [1, 4096]"),
            ("history.max_parts", settings.history.max_parts, lambda n: n >= 1, ">= 1"),
            ("history.merge_lines", settings.history.merge_lines, lambda n: n >= 2, ">= 2"),
        ],
    )
    for i, campaign in enumerate(settings.campaigns):
        _check_params(where, f"campaigns[{i}]", campaign)
    return settings


def _check_rules(where: str, rules: list[tuple[str, Any, Any, str]]) -> None:
    """`ConfigError` for the first (key, value, ok, wanted) whose value is not ok."""
    for key, value, ok, wanted in rules:
        try:
            good = ok(value)
        except TypeError:
            good = False
        if not good:
            raise ConfigError(f"{where}: {key} must be {wanted}, got {value!r}")


def _check_params(where: str, section: str, params: Any) -> None:
    """A package's ``params.validate()``, its error translated into ours, naming the section."""
    try:
        params.validate()
    except (ParamsError, RulesError) as exc:
        raise ConfigError(f"{where}: {section}.{exc.field} must be {exc.wanted}, got {exc.value!r}") from exc


def resolve_secret(settings: Settings, create: bool = False) -> bytes:
    """The list-code key: `secret` (or LISTWISE_SECRET), else the secret file.

    With `create`, a missing secret file is written with a fresh random key, created with
    mode 600 (never readable by others, not even for an instant); that is what
    `listwise init` does for the embedded default. An empty or blank secret is refused.
    """
    if settings.secret:
        if not settings.secret.strip():
            raise ConfigError("the secret (LISTWISE_SECRET or 'secret' in listwise.toml) is blank")
        return settings.secret.encode()
    path = Path(settings.secret_file)
    if path.exists():
        text = path.read_text(encoding="utf-8").strip()
        if not text:
            raise ConfigError(
                f"{path}: the secret file is empty; restore it from a backup (a new secret "
                "would invalidate every printed code)"
            )
        return text.encode()
    if not create:
        raise ConfigError(
            f"no secret: set LISTWISE_SECRET, 'secret' in listwise.toml, or run 'listwise init' to create {path}"
        )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path.read_text(encoding="utf-8").strip().encode()


def redact_url(url: str) -> str:
    """`url` with its password replaced by ***, for logs, summaries and `listwise settings`."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL we can parse: show nothing of it
        return "***"


def public_settings(settings: Settings) -> dict[str, Any]:
    """The settings as a dict with nothing secret in it: no secret, no database password."""
    shown = dataclasses.replace(
        settings, secret="***" if settings.secret else "", database_url=redact_url(settings.database_url)
    )
    return dataclasses.asdict(shown)
