"""The checkout's wire vocabulary: request bodies, refusal words and their HTTP statuses.

What a till sends and what it is answered, shared by the service (engine/server.py), the
command line (`listwise checkout --file`) and the library that does the work
(engine/checkout.py):

* `CheckoutRequest`, `ScanRequest`, `VoidRequest`, `Item`: the bodies of ``POST /v1/checkout``,
  ``/v1/scan`` and ``/v1/void`` (pydantic, strict: unknown fields refused, "499" is not 499).
  A timestamp is ISO text, store-local or with an offset or ``Z``; converting it to the
  store's zone needs the database, so engine/checkout.py does that.
* `parse_request` judges a body (the shape, then the limits of `CheckoutSettings`) exactly
  as it is judged on the wire; `request_sha256` is the idempotency digest of a request.
* `CheckoutRefused` is every refusal, a machine-readable `reason` word and a detail;
  `REASON_STATUS` gives the HTTP status the service answers each word with.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.config import CheckoutSettings
from engine.errors import EngineError
from engine.zones import from_iso

__all__ = [
    "REASON_STATUS",
    "CheckoutRefused",
    "CheckoutRequest",
    "ScanRequest",
    "VoidRequest",
    "Item",
    "parse_request",
    "request_sha256",
]

# Refusal reason -> HTTP status the service answers with (the library raises the word; the
# status travels on the exception, so every caller answers from this one table).
REASON_STATUS = {
    "malformed_json": 400,
    "invalid_request": 422,
    "too_many_items": 422,
    "clock_skew": 422,
    "bad_check": 400,
    "unknown": 404,
    "expired": 410,
    "revoked": 410,
    "not_yet_valid": 409,
    "unknown_store": 404,
    "unknown_basket": 404,
    "conflict": 409,
    "voided": 409,
    "basket_exists": 409,
    "unauthorized": 401,
    "forbidden": 403,
    "too_large": 413,
    "too_many_failed_checks": 429,
    "busy": 503,
}


class CheckoutRefused(EngineError):
    """A scan, checkout or void the service refuses; `reason` is the machine-readable word.

    Belongs with the other errors in engine/errors.py once the owner of that file takes it.
    """

    def __init__(self, reason: str, detail: str, retry_after: int | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status = REASON_STATUS.get(reason, 400)
        self.retry_after = retry_after  # seconds, for the Retry-After header (429, 503)

    def as_dict(self) -> dict[str, str]:
        return {"error": self.reason, "detail": self.detail}


# ---------------------------------------------------------------- request shapes


def _printable(value: str) -> str:
    # NUL and other control characters: PostgreSQL refuses NUL in text (a 500 that logged the
    # card), and no till sends them. The message never repeats the value (it may be a card).
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("must not contain control characters (NUL, tab, newline, ...)")
    return value


_Text = Annotated[str, Field(strict=True, min_length=1, max_length=64), AfterValidator(_printable)]
_Code = Annotated[str, Field(strict=True, min_length=1, max_length=64), AfterValidator(_printable)]


class _Strict(BaseModel):
    # Unknown fields refused; fields are strict one by one ("499" is not 499, 4.99 is not a
    # whole number of cents), but timestamps come as ISO text (a dict from JSON, not JSON).
    model_config = ConfigDict(extra="forbid")


class Item(_Strict):
    """One basket line as the till sends it."""

    sku: _Text
    quantity: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] = Field(
        description="units (or kilograms for weighed goods); > 0 — returns go through the import"
    )
    amount_cents: Annotated[int, Field(strict=True, ge=0)] = Field(
        description="price of the line before listwise discounts"
    )


def _iso_text(value: Any) -> Any:
    if not isinstance(value, (str, dt.datetime)):
        raise ValueError("must be an ISO timestamp text, e.g. 2025-03-04T10:15:00 or 2025-03-04T10:15:00-05:00")
    return from_iso(value) if isinstance(value, str) else value  # `Z` kept apart from +00:00


def _local_timestamp(value: dt.datetime) -> dt.datetime:
    """The year checked; naive (store-local) or with its offset, converted later by the store's zone."""
    if not 2000 <= value.year <= 2200:
        raise ValueError(f"year {value.year} is out of range")
    return value


class CheckoutRequest(_Strict):
    """`POST /v1/checkout`: a basket at the lane, with the list codes scanned and the card."""

    store_id: _Text
    lane: Annotated[int, Field(strict=True, ge=0, le=100_000)] | None = None
    basket_id: _Text
    timestamp: dt.datetime = Field(
        description="time of the basket: store-local, or with an offset or Z "
        "(converted to the store's zone); validity is judged at the "
        "server's clock, at this time only within the tolerance"
    )
    codes: Annotated[list[_Code], Field(max_length=100)] = []
    card_number: Annotated[str, Field(strict=True, min_length=1, max_length=32), AfterValidator(_printable)] | None = (
        None
    )
    items: Annotated[list[Item], Field(min_length=1)]

    @field_validator("timestamp", mode="before")
    @classmethod
    def _timestamp_text(cls, value: Any) -> Any:
        return _iso_text(value)

    @field_validator("timestamp")
    @classmethod
    def _timestamp(cls, value: dt.datetime) -> dt.datetime:
        return _local_timestamp(value)


class ScanRequest(_Strict):
    """`POST /v1/scan`: one list code; `at` is the moment validity is judged (default now).

    `at` is store-local time of the key's store, or carries an offset or Z (then converted);
    it counts only within `clock_tolerance_minutes` of the server's clock. `lane` names the
    lane for the limit on failed code checks.
    """

    code: _Code
    at: dt.datetime | None = None
    lane: Annotated[int, Field(strict=True, ge=0, le=100_000)] | None = None

    @field_validator("at", mode="before")
    @classmethod
    def _at_text(cls, value: Any) -> Any:
        return None if value is None else _iso_text(value)

    @field_validator("at")
    @classmethod
    def _at(cls, value: dt.datetime | None) -> dt.datetime | None:
        return None if value is None else _local_timestamp(value)


class VoidRequest(_Strict):
    """`POST /v1/void`: reverse the checkout of one basket."""

    store_id: _Text
    basket_id: _Text


def _validation_detail(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse_request(body: CheckoutRequest | dict | str | bytes, settings: CheckoutSettings) -> CheckoutRequest:
    """A validated `CheckoutRequest`, or `CheckoutRefused` naming the first bad fields.

    Dicts go through JSON so that they are judged exactly as a body on the wire is.
    Beyond the shape: at most `settings.max_items` items and `settings.max_codes` codes,
    no line above `max_line_quantity` units or `max_line_amount_cents`.
    """
    if isinstance(body, (str, bytes)) and len(body) > settings.max_body_bytes:
        raise CheckoutRefused("too_large", f"request body over {settings.max_body_bytes} bytes")
    if not isinstance(body, CheckoutRequest):
        try:
            text = body if isinstance(body, (str, bytes)) else json.dumps(body, default=str)
            body = CheckoutRequest.model_validate_json(text)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" for e in exc.errors()):
                raise CheckoutRefused("malformed_json", _validation_detail(exc)) from exc
            raise CheckoutRefused("invalid_request", _validation_detail(exc)) from exc
    if len(body.items) > settings.max_items:
        raise CheckoutRefused("too_many_items", f"{len(body.items)} items, at most {settings.max_items}")
    if len(body.codes) > settings.max_codes:
        raise CheckoutRefused("invalid_request", f"codes: {len(body.codes)} codes, at most {settings.max_codes}")
    for i, item in enumerate(body.items):
        if item.quantity > settings.max_line_quantity:
            raise CheckoutRefused(
                "invalid_request", f"items.{i}.quantity: {item.quantity} is above {settings.max_line_quantity}"
            )
        if item.amount_cents > settings.max_line_amount_cents:
            raise CheckoutRefused(
                "invalid_request",
                f"items.{i}.amount_cents: {item.amount_cents} is above {settings.max_line_amount_cents}",
            )
    return body


def request_sha256(request: CheckoutRequest) -> str:
    """sha256 of the canonical body (sorted keys, no spaces): key order does not matter."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
