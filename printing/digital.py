"""The same list on a screen: a self-contained HTML page and an RFC 5322 message (.eml).

`list_html` renders one `ListDocument` as a single HTML page with nothing fetched from
elsewhere (inline CSS, the barcode as inline SVG), so a phone can show it at the till offline;
`list_text` is the plain-text twin; `list_email` wraps both in a multipart/alternative message
addressed to the customer, ready for the chain's mail service: written, never sent from here. The content is the printed list's: specials with why, needs, rewards, tip,
the ×N legend, the terms and how to opt out. The page carries the customer's first line of
address (their name) only, and the message their own address: it is their own list.

The barcode is the printed symbol's module pattern (`printing.barcode.modules`) as SVG
rectangles, one unit a module, with the 10-module quiet zones; ``shape-rendering:
crispEdges`` keeps the edges sharp on any screen. Output is deterministic (the message's
Date and Message-ID come from the list), so a re-print writes the same bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr

from printing.barcode import QUIET_MODULES, bar_runs, modules
from printing.document import ListDocument, NeedLine, OfferLine
from printing.layout import LayoutOptions, day_text, money, ordered_lines, period_text, terms_line
from printing.reasons import plain_reason

__all__ = ["barcode_svg", "list_html", "list_text", "list_email", "email_sender"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;margin:0;padding:12px;
max-width:720px;color:#111;background:#fff}
h1{color:#1a5933;font-size:1.4em;margin:0}
.code{text-align:center;margin:12px 0;padding:8px;border:1px solid #ddd;border-radius:6px;background:#fff}
.code svg{width:100%;max-width:420px;height:auto;display:block;margin:0 auto}
.code p{font:1.1em monospace;letter-spacing:.1em;margin:4px 0 0}
h2{background:#e0e0e0;font-size:1em;padding:4px 6px;margin:14px 0 4px}
ul{list-style:none;padding:0;margin:0}li{padding:4px 0;border-bottom:1px solid #eee}
label{display:flex;gap:8px;align-items:flex-start}.what{flex:1}.price{text-align:right;white-space:nowrap}
.why{display:block;color:#1a5933;font-size:.85em}.when{display:block;color:#555;font-size:.85em}
.tip{border:1px solid #1a5933;border-radius:6px;padding:8px;margin-top:14px}
footer{color:#555;font-size:.8em;margin-top:14px}
"""


def barcode_svg(code: str, module_px: int = 3, height_px: int = 90) -> str:
    """The Code 128 symbol of `code` as inline SVG (quiet zones included), one rect a bar."""
    pattern = modules(code)
    width = len(pattern) + 2 * QUIET_MODULES
    rects = "".join(
        f'<rect x="{start + QUIET_MODULES}" y="0" width="{run}" height="{height_px // module_px}"/>'
        for start, run in bar_runs(pattern)
    )
    h = height_px // module_px
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="list code {html.escape(code)}" '
        f'viewBox="0 0 {width} {h}" width="{width * module_px}" height="{h * module_px}" '
        f'shape-rendering="crispEdges"><rect width="{width}" height="{h}" fill="#fff"/>'
        f'<g fill="#000">{rects}</g></svg>'
    )


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _line_html(line: OfferLine | NeedLine) -> str:
    if isinstance(line, NeedLine):
        price = _e(money(line.usual_price_cents))
        return (
            f'<li><label><input type="checkbox"><span class="what">{_e(line.description)}'
            f'<span class="when">likely around {_e(day_text(line.expected_on))}</span></span>'
            f'<span class="price">{price}</span></label></li>'
        )
    uses = f" ×{line.max_uses}" if line.max_uses > 1 else ""
    when = f"likely around {day_text(line.expected_on)} · " if line.expected_on else ""
    why = f'<span class="why">{_e(line.reason)}</span>' if line.reason else ""
    usual = f"<s>{_e(money(line.usual_price_cents))}</s> " if line.usual_price_cents is not None else ""
    return (
        f'<li><label><input type="checkbox"><span class="what">{_e(line.description)}{why}'
        f'<span class="when">{_e(when)}valid through {_e(day_text(line.valid_to))}</span></span>'
        f'<span class="price">{usual}<b>{_e(money(line.your_price_cents))}</b><br>'
        f"save {_e(money(line.discount_cents) + uses)}</span></label></li>"
    )


def _reward_text(r) -> str:  # noqa: ANN001 - RewardLine
    spend = f" on a basket of {money(r.min_spend_cents)} or more" if r.min_spend_cents else ""
    uses = f"{r.max_uses} coupons" if r.max_uses > 1 else "1 coupon"
    return f"{money(r.discount_cents)} off{spend} · {uses}, one a visit · valid through {day_text(r.valid_to)}"


def list_html(doc: ListDocument, options: LayoutOptions) -> str:
    """`doc` as one self-contained HTML page (UTF-8, no external resource)."""
    name = doc.address_lines[0] if doc.address_lines else ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{_e(doc.chain_name)}: your list {_e(period_text(doc))}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(doc.chain_name)}</h1>",
        "".join(f"<div>{_e(line)}</div>" for line in doc.store_lines),
        f'<p dir="auto">Your list for {_e(period_text(doc))}' + (f", {_e(name)}" if name else "") + "</p></header>",
        f'<div class="code">{barcode_svg(doc.code)}<p>{_e(doc.code)}</p>'
        "<div>Show this code or your card at the checkout.</div></div>",
    ]
    for dept, lines in ordered_lines(doc, options.aisle_order):
        parts.append(f"<section><h2>{_e(dept)}</h2><ul>{''.join(_line_html(x) for x in lines)}</ul></section>")
    if doc.rewards:
        items = "".join(
            f'<li>{_e(_reward_text(r))}<span class="why">{_e(plain_reason("reward"))}</span></li>' for r in doc.rewards
        )
        parts.append(f"<section><h2>Reward coupons</h2><ul>{items}</ul></section>")
    if doc.tip_title or doc.tip_body:
        parts.append(f'<div class="tip"><b>{_e(doc.tip_title or "")}</b><p>{_e(doc.tip_body or "")}</p></div>')
    terms = terms_line(doc, options)
    parts.append(
        f"<footer><p>{_e(terms)}</p><p>{_e(options.opt_out)}</p>"
        f"<p>{_e(doc.chain_name)} · list {_e(doc.code)}</p></footer></body></html>"
    )
    return "\n".join(parts) + "\n"


def list_text(doc: ListDocument, options: LayoutOptions) -> str:
    """`doc` as plain text (the text part of the e-mail)."""
    out = [f"{doc.chain_name}: your list for {period_text(doc)}", f"List code: {doc.code}", ""]
    for dept, lines in ordered_lines(doc, options.aisle_order):
        out.append(dept.upper())
        for line in lines:
            if isinstance(line, NeedLine):
                price = f" ({money(line.usual_price_cents)})" if line.usual_price_cents is not None else ""
                out.append(f"[ ] {line.description}{price}, likely around {day_text(line.expected_on)}")
            else:
                uses = f" ×{line.max_uses}" if line.max_uses > 1 else ""
                out.append(
                    f"[ ] {line.description}: {money(line.your_price_cents)} "
                    f"(save {money(line.discount_cents)}{uses}), valid through {day_text(line.valid_to)}"
                )
                if line.reason:
                    out.append(f"      {line.reason}")
        out.append("")
    if doc.rewards:
        out += ["REWARD COUPONS"] + [f"- {_reward_text(r)}" for r in doc.rewards] + [""]
    if doc.tip_title or doc.tip_body:
        out += [doc.tip_title or "", doc.tip_body or "", ""]
    out += [terms_line(doc, options), options.opt_out]
    return "\n".join(out).rstrip() + "\n"


def email_sender(chain_name: str, email_from: str = "") -> str:
    """The From: of list messages: `email_from`, else the chain's name at lists@localhost."""
    return email_from.strip() or formataddr((chain_name, "lists@localhost"))


def _header(text: str) -> str:
    """A header value: as it is in ASCII, else RFC 2047 encoded words (UTF-8), folded with CRLF."""
    if text.isascii():
        return text
    return Header(text, "utf-8").encode(linesep="\r\n")


def _part(content_type: str, text: str) -> str:
    canonical = text.replace("\r\n", "\n").replace("\n", "\r\n")  # text in MIME: CRLF line breaks
    body = base64.encodebytes(canonical.encode("utf-8")).decode("ascii").replace("\n", "\r\n")
    return f'Content-Type: {content_type}; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n{body}'


def list_email(doc: ListDocument, options: LayoutOptions, sender: str) -> bytes | None:
    """`doc` as an RFC 5322 message (multipart/alternative: text, then HTML), CRLF line ends.

    ``None`` when the customer has no e-mail address. Date is the list's first day at 06:00
    UTC, the Message-ID and the MIME boundary name the list code, so the same list gives the
    same bytes. Built by hand in 7-bit ASCII (headers in RFC 2047 words, parts in base64):
    the stdlib's `EmailMessage` took ~3 ms a list, ten times the list's HTML and PDF together.
    """
    if not doc.email or "@" not in doc.email:
        return None
    name = doc.address_lines[0] if doc.address_lines else ""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    from_name, from_addr = parseaddr(sender)
    boundary = f"=_list_{doc.code}"  # "=_" never occurs in base64: no part can contain it
    date = format_datetime(dt.datetime.combine(doc.valid_from, dt.time(6, 0), tzinfo=dt.UTC))
    headers = [
        ("From", formataddr((from_name, from_addr), charset="utf-8")),
        ("To", formataddr((name, doc.email), charset="utf-8") if name else doc.email),
        ("Subject", _header(f"Your {doc.chain_name} list for {period_text(doc)}")),
        ("Date", date),
        ("Message-ID", f"<list-{doc.code}@{domain}>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    text = (
        f"{head}\r\n--{boundary}\r\n{_part('text/plain', list_text(doc, options))}"
        f"--{boundary}\r\n{_part('text/html', list_html(doc, options))}--{boundary}--\r\n"
    )
    return text.encode("ascii")
