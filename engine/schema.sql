-- listwise system of record.
--
-- Runs unchanged on SQLite (>= 3.35) and PostgreSQL (>= 13): portable types only
-- (BIGINT, INTEGER, TEXT, DATE, TIMESTAMP, DOUBLE PRECISION), partial indexes, no
-- dialect-specific defaults. Statements are separated by ';' at the end of a line.
--
-- Conventions
--   * Money is integer cents (columns end in _cents). Percentages are basis points (_bp).
--   * Booleans are INTEGER 0/1 with a CHECK, so both databases agree.
--   * Surrogate keys (*_key, *_id BIGINT) are allocated by the application through the
--     `sequences` table (engine/db.py: allocate_keys), inside the writing transaction, so
--     that bulk loads can assign keys before inserting and both databases behave alike.
--   * baskets.ts is store-local wall-clock time (no zone, as the POS writes it), in the
--     store's zone (stores.timezone, else the chain's `timezone` setting): imported and
--     checkout timestamps with an offset are converted to it; every *_at column is UTC.
--   * Personal data (names, addresses, card numbers, e-mails) lives in `customers` only.

CREATE TABLE IF NOT EXISTS sequences (
    name        TEXT PRIMARY KEY,
    next_value  BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS stores (
    store_id     TEXT PRIMARY KEY,
    name         TEXT,
    address      TEXT,
    city         TEXT,
    state        TEXT,
    postal_code  TEXT,
    timezone     TEXT              -- IANA zone of the store's local time; NULL: the chain's (settings)
);

-- The only table holding personal data.
CREATE TABLE IF NOT EXISTS customers (
    customer_key    BIGINT PRIMARY KEY,
    customer_id     TEXT NOT NULL UNIQUE,
    card_number     TEXT UNIQUE,
    first_name      TEXT,
    last_name       TEXT,
    address_line1   TEXT,
    address_line2   TEXT,
    city            TEXT,
    state           TEXT,
    postal_code     TEXT,
    email           TEXT,
    household_size  INTEGER,
    opted_out       INTEGER NOT NULL DEFAULT 0 CHECK (opted_out IN (0, 1)),
    joined_on       DATE
);

CREATE TABLE IF NOT EXISTS manufacturers (
    manufacturer_id  TEXT PRIMARY KEY,
    name             TEXT
);

CREATE TABLE IF NOT EXISTS products (
    product_key          BIGINT PRIMARY KEY,
    sku                  TEXT NOT NULL UNIQUE,
    description          TEXT,
    category             TEXT NOT NULL,
    department           TEXT,
    brand                TEXT,
    brand_type           TEXT NOT NULL CHECK (brand_type IN ('national', 'store')),
    manufacturer_id      TEXT REFERENCES manufacturers (manufacturer_id),
    size                 TEXT,
    regular_price_cents  BIGINT CHECK (regular_price_cents >= 0),
    unit_cost_cents      BIGINT CHECK (unit_cost_cents >= 0)
);
CREATE INDEX IF NOT EXISTS ix_products_category ON products (category);

-- One row per basket; (store_id, basket_id) is the POS's identity of a basket.
CREATE TABLE IF NOT EXISTS baskets (
    basket_key    BIGINT PRIMARY KEY,
    store_id      TEXT NOT NULL REFERENCES stores (store_id),
    basket_id     TEXT NOT NULL,
    customer_key  BIGINT REFERENCES customers (customer_key),
    ts            TIMESTAMP NOT NULL,
    day           DATE NOT NULL,
    source        TEXT NOT NULL DEFAULT 'import' CHECK (source IN ('import', 'checkout')),
    lane          INTEGER,
    voided        INTEGER NOT NULL DEFAULT 0 CHECK (voided IN (0, 1)),
    -- How many lines history holds for the basket (its Parquet parts, or basket_lines for the
    -- checkout's) and an order-free checksum of them (engine/ingest.py: line_checksum; integer
    -- arithmetic, stable across library versions): a re-import compares a file's baskets with these
    -- and reads the held lines only for the baskets that differ (split baskets). NULL: not known.
    line_count    INTEGER,
    line_sum      BIGINT,
    -- basket_id first: POS basket ids mostly grow with time, so an import of a week or a month adds
    -- its keys at the index's right end, not at the end of every store's stretch (the real panel on
    -- PostgreSQL: its 10 monthly inserts 482 -> 428 ms). Either order serves every lookup (both
    -- columns by equality); an older database keeps (store_id, basket_id) and the import sorts its
    -- baskets by whichever order the index has (engine/ingest.py: _unique_order).
    UNIQUE (basket_id, store_id)
);
CREATE INDEX IF NOT EXISTS ix_baskets_day ON baskets (day);
-- Not indexed by customer: no query reads the baskets of given customers (the batch's home stores
-- read them all), and an index on (customer_key, day) met every import's inserts in random order
-- (the real panel's 11 files: a tenth of the import). Older databases lose it at `listwise init`.
-- The one cost: deleting a customers row (listwise never does; a DBA might) checks the foreign key
-- with a scan of baskets; before a purge of many, CREATE INDEX ix_purge ON baskets (customer_key),
-- and drop it after (README, "Where history lives").
DROP INDEX IF EXISTS ix_baskets_customer;

-- Line items the database holds: the checkout's baskets (engine/checkout.py, one small
-- transaction per basket) and the lines of databases from before the Parquet history. Imported
-- lines live in the history store's Parquet part files (history_parts below, engine/history_store.py);
-- engine/db.py Gateway.history reads both. customer_key and day are copied from the basket so that
-- the reads need no join. No index and no constraint on purpose: (basket_key, line_no) is unique by
-- construction (its writer allocates basket_key and numbers the lines) and every value is validated
-- before it is written.
CREATE TABLE IF NOT EXISTS basket_lines (
    basket_key      BIGINT NOT NULL,
    line_no         INTEGER NOT NULL,
    customer_key    BIGINT,
    day             DATE NOT NULL,
    product_key     BIGINT NOT NULL,
    quantity        DOUBLE PRECISION NOT NULL,
    amount_cents    BIGINT NOT NULL,
    discount_cents  BIGINT NOT NULL DEFAULT 0
);

-- The Parquet history store (engine/history_store.py): one row. buckets: customer_key % buckets
-- names a line's bucket, fixed when the database is created. path: the directory of the part files
-- (relative: to the SQLite file's directory); NULL: beside the SQLite file (listwise.db ->
-- listwise.history/), on PostgreSQL not set (`[history] path`, then `listwise init`).
CREATE TABLE IF NOT EXISTS history_store (
    store_id  INTEGER PRIMARY KEY CHECK (store_id = 1),
    buckets   INTEGER NOT NULL CHECK (buckets >= 1),
    path      TEXT
);

-- The manifest: the committed Parquet part files of history. A file is part of history exactly
-- when a row names it; an import inserts its rows in the transaction that adds its baskets and
-- its imports row (one commit point: a kill leaves only files no row names, which readers never
-- open and `listwise history compact` deletes). A compaction swaps rows in one transaction.
CREATE TABLE IF NOT EXISTS history_parts (
    file_name     TEXT PRIMARY KEY,   -- relative to the store's path: bucket=07/i000000012-3fa9c1d2.parquet
    bucket        BIGINT,             -- customer_key % buckets; NULL: lines without customer (bucket=anon)
    import_id     BIGINT,             -- the import that wrote it; NULL: a compaction's
    line_count    BIGINT NOT NULL,
    first_day     DATE NOT NULL,      -- the days and basket keys it holds: reads skip files outside them
    last_day      DATE NOT NULL,
    first_basket  BIGINT NOT NULL,
    last_basket   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_history_parts_bucket ON history_parts (bucket);

CREATE TABLE IF NOT EXISTS deals (
    deal_id           TEXT PRIMARY KEY,
    manufacturer_id   TEXT NOT NULL REFERENCES manufacturers (manufacturer_id),
    sku               TEXT,
    category          TEXT,
    brand             TEXT,
    kind              TEXT NOT NULL CHECK (kind IN ('amount_off', 'percent_off', 'price')),
    value_cents       BIGINT,          -- amount_off and price
    percent_bp        INTEGER,         -- percent_off, in basis points (2500 = 25 %)
    funded_share      DOUBLE PRECISION NOT NULL DEFAULT 1 CHECK (funded_share >= 0 AND funded_share <= 1),
    starts_on         DATE NOT NULL,
    ends_on           DATE NOT NULL,
    budget_cents      BIGINT,
    max_per_customer  INTEGER,
    target_cells      TEXT             -- optional, e.g. 'national:high;switcher:high'
);

-- Audit of every file imported (sha256 makes a re-import recognisable).
CREATE TABLE IF NOT EXISTS imports (
    import_id    BIGINT PRIMARY KEY,
    kind         TEXT NOT NULL,
    file_name    TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    rows_read    BIGINT NOT NULL,
    rows_added   BIGINT NOT NULL,
    imported_at  TIMESTAMP NOT NULL
);

-- Editable content: tips and recipes printed on lists (category NULL: general tip).
CREATE TABLE IF NOT EXISTS tips (
    tip_id    BIGINT PRIMARY KEY,
    category  TEXT,
    title     TEXT NOT NULL,
    body      TEXT NOT NULL
);

-- One biweekly batch per period.
CREATE TABLE IF NOT EXISTS batches (
    batch_id       BIGINT PRIMARY KEY,
    period_start   DATE NOT NULL UNIQUE,
    period_end     DATE NOT NULL,          -- exclusive
    status         TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'cancelled')),
    run_token      TEXT,                   -- the run that may write it (engine/batch.py: lifecycle)
    started_at     TIMESTAMP NOT NULL,
    finished_at    TIMESTAMP,
    settings_json  TEXT,
    summary_json   TEXT
);

-- Who was in the batch: every qualifying customer, treated or hold-out.
CREATE TABLE IF NOT EXISTS batch_members (
    batch_id      BIGINT NOT NULL REFERENCES batches (batch_id),
    customer_key  BIGINT NOT NULL REFERENCES customers (customer_key),
    grp           TEXT NOT NULL CHECK (grp IN ('treated', 'holdout')),
    avg_weekly_spend_cents BIGINT NOT NULL,
    PRIMARY KEY (batch_id, customer_key)
);

CREATE TABLE IF NOT EXISTS lists (
    list_id       BIGINT PRIMARY KEY,
    batch_id      BIGINT NOT NULL REFERENCES batches (batch_id),
    customer_key  BIGINT NOT NULL REFERENCES customers (customer_key),
    store_id      TEXT REFERENCES stores (store_id),
    code          TEXT NOT NULL UNIQUE,
    valid_from    DATE NOT NULL,
    valid_to      DATE NOT NULL,           -- inclusive
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    tip_id        BIGINT,
    UNIQUE (batch_id, customer_key)
);
CREATE INDEX IF NOT EXISTS ix_lists_customer ON lists (customer_key, valid_from);

CREATE TABLE IF NOT EXISTS offers (
    offer_id        BIGINT PRIMARY KEY,
    list_id         BIGINT NOT NULL REFERENCES lists (list_id),
    line_no         INTEGER NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('cycle', 'conversion', 'deal', 'household', 'reward')),
    product_key     BIGINT REFERENCES products (product_key),   -- NULL: a reward coupon on the basket
    category        TEXT,
    deal_id         TEXT REFERENCES deals (deal_id),
    funder          TEXT NOT NULL,            -- 'retailer' or a manufacturer_id
    funded_share    DOUBLE PRECISION NOT NULL DEFAULT 0,
    discount_cents  BIGINT NOT NULL CHECK (discount_cents >= 0),   -- per use
    min_spend_cents BIGINT,                   -- reward coupons: basket spend needed
    max_uses        INTEGER NOT NULL DEFAULT 1 CHECK (max_uses >= 1),
    valid_from      DATE NOT NULL,
    valid_to        DATE NOT NULL,            -- inclusive
    expected_on     DATE,                     -- cycle offers: likely needed around
    p_buy           DOUBLE PRECISION,
    expected_value_cents BIGINT,
    brand_cell      TEXT,
    volume_tier     TEXT,
    reason          TEXT,
    UNIQUE (list_id, line_no)
);
CREATE INDEX IF NOT EXISTS ix_offers_deal ON offers (deal_id);

-- Checkouts seen by the service: idempotency on (store_id, basket_id).
CREATE TABLE IF NOT EXISTS checkouts (
    store_id       TEXT NOT NULL,
    basket_id      TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    response_json  TEXT NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    voided_at      TIMESTAMP,
    PRIMARY KEY (store_id, basket_id)
);

-- Each use of an offer. The partial unique index makes "at most max_uses" hold under
-- concurrent lanes on both databases; a voided redemption frees its use number.
CREATE TABLE IF NOT EXISTS redemptions (
    redemption_id   BIGINT PRIMARY KEY,
    offer_id        BIGINT NOT NULL REFERENCES offers (offer_id),
    use_no          INTEGER NOT NULL,
    store_id        TEXT NOT NULL,
    basket_id       TEXT NOT NULL,
    redeemed_on     DATE NOT NULL,            -- store-local day of the basket
    discount_cents  BIGINT NOT NULL CHECK (discount_cents >= 0),
    voided          INTEGER NOT NULL DEFAULT 0 CHECK (voided IN (0, 1)),
    created_at      TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_redemptions_use ON redemptions (offer_id, use_no) WHERE voided = 0;
CREATE INDEX IF NOT EXISTS ix_redemptions_basket ON redemptions (store_id, basket_id);
CREATE INDEX IF NOT EXISTS ix_redemptions_day ON redemptions (redeemed_on);

CREATE TABLE IF NOT EXISTS api_keys (
    key_id      BIGINT PRIMARY KEY,
    store_id    TEXT NOT NULL REFERENCES stores (store_id),
    key_sha256  TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMP NOT NULL,
    revoked_at  TIMESTAMP
);

CREATE TABLE IF NOT EXISTS extracts (
    extract_id       BIGINT PRIMARY KEY,
    manufacturer_id  TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('extract', 'settlement')),
    period_from      DATE NOT NULL,
    period_to        DATE NOT NULL,
    out_dir          TEXT NOT NULL,
    manifest_sha256  TEXT,
    created_at       TIMESTAMP NOT NULL
);

-- Facts about the chain's installation: the fingerprint of the list-code secret
-- (engine/chain_key.py), so a second `init` or another LISTWISE_SECRET cannot silently
-- invalidate every printed code.
CREATE TABLE IF NOT EXISTS chain_meta (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- The needs section of a list (coupons/needs.py): the categories the customer likely buys in
-- the period, at full price, best first. No discount, so no budget; read by printing,
-- reprint, checkout and the demo's report.
CREATE TABLE IF NOT EXISTS list_needs (
    list_id        BIGINT NOT NULL REFERENCES lists (list_id),
    line_no        INTEGER NOT NULL,
    category       TEXT NOT NULL,
    product_key    BIGINT REFERENCES products (product_key),   -- the usual product; NULL: the category
    p_buy          DOUBLE PRECISION NOT NULL CHECK (p_buy >= 0 AND p_buy <= 1),
    expected_on    DATE NOT NULL,                              -- likely needed around (inside the period)
    interval_days  INTEGER,                                    -- usually bought every so many days
    PRIMARY KEY (list_id, line_no)
);

-- Failed list-code checks per API key and per store lane, as token buckets shared by every
-- process of the checkout service (engine/shared_limits.py; `serve --workers N`). `at` is the
-- wall clock in seconds (the processes' one shared clock); a row untouched for a whole window
-- is deleted (its bucket is full again).
CREATE TABLE IF NOT EXISTS check_failures (
    bucket  TEXT PRIMARY KEY,                -- 'key:<key_id>' or 'lane:<store_id>:<lane>'
    tokens  DOUBLE PRECISION NOT NULL,
    at      DOUBLE PRECISION NOT NULL
);
