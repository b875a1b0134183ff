"""List codes: the short code a list's barcode carries.

A code is 18 decimal digits: the list id zero-padded to 10 digits, then an 8-digit keyed
check, ``HMAC-SHA256(secret, "listwise-list:<id>")`` truncated. Digits only, because a
cashier keys it in when a barcode will not scan, and Code 128 packs digit pairs into one
symbol (subset C), which keeps the barcode short and its modules wide. A guessed, mistyped
or altered code fails the check with probability 1 - 1e-8 and is refused before any
database look-up (DESIGN.md, "The list code").

Key rotation (`engine.chain_key.rotate_secret`, ``listwise keys rotate``): the current key
signs; a retired key still verifies the codes of the lists it signed — list ids up to the
last one issued before the rotation, never a later one — until those lists expire.
`engine.chain_key.verify_secret` hands the retired keys to `accept_retired`, so every process
that checks codes (the service, ``checkout``, ``lists``) accepts them once it has verified its
key against the database.
"""

import hashlib
import hmac

from engine.errors import CodeError

__all__ = ["make_code", "parse_code", "accept_retired", "CODE_LENGTH"]

_ID_DIGITS = 10
_CHECK_DIGITS = 8
CODE_LENGTH = _ID_DIGITS + _CHECK_DIGITS

# current key -> ((retired key, last list id it signed), ...): filled by `accept_retired`
_RETIRED: dict[bytes, tuple[tuple[bytes, int], ...]] = {}


def accept_retired(secret: bytes, retired: list[tuple[bytes, int]]) -> None:
    """With `secret` as the current key, also accept codes signed by each retired key for list ids
    up to its last one. Replaces what was accepted before for `secret` (an empty list: none)."""
    _RETIRED[secret] = tuple((key, int(last)) for key, last in retired)


def _check(list_id: int, secret: bytes) -> str:
    digest = hmac.new(secret, f"listwise-list:{list_id}".encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**_CHECK_DIGITS:0{_CHECK_DIGITS}d}"


def make_code(list_id: int, secret: bytes) -> str:
    """The printed code of list `list_id`.

    Examples
    --------
    >>> make_code(42, b"k")[:10]
    '0000000042'
    """
    if not 0 < list_id < 10**_ID_DIGITS:
        raise CodeError(f"list id {list_id} does not fit in {_ID_DIGITS} digits")
    return f"{list_id:0{_ID_DIGITS}d}{_check(list_id, secret)}"


def parse_code(code: str, secret: bytes) -> int:
    """The list id a code names; `CodeError` if it is malformed or fails the keyed check."""
    code = code.strip().replace(" ", "").replace("-", "")
    # isascii: str.isdigit() also takes '٣' and '²' (int() then fails, or reads another digit)
    if len(code) != CODE_LENGTH or not (code.isascii() and code.isdigit()):
        raise CodeError(f"code {code!r} is not {CODE_LENGTH} digits")
    list_id = int(code[:_ID_DIGITS])
    if hmac.compare_digest(code[_ID_DIGITS:], _check(list_id, secret)):
        return list_id
    for key, last in _RETIRED.get(secret, ()):
        if list_id <= last and hmac.compare_digest(code[_ID_DIGITS:], _check(list_id, key)):
            return list_id
    raise CodeError(f"code {code!r} fails its check")
