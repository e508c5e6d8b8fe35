"""An invoice as a small self-contained HTML page (inline CSS, no scripts, every value escaped)."""

from __future__ import annotations

from html import escape

from billing.local.documents import (
    AMOUNT_LABEL,
    SUBTOTAL_LABEL,
    TOTAL_LABEL,
    UNIT_PRICE_LABEL,
    InvoiceDocument,
    Party,
)

_STYLE = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328;
       max-width: 760px; margin: 40px auto; padding: 0 24px; }
h1 { font-size: 28px; margin: 0 0 12px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
.parties { display: flex; gap: 32px; margin: 28px 0; }
.party { flex: 1; }
.party h2 { font-size: 11px; letter-spacing: .08em; text-transform: uppercase; color: #656d76;
            margin: 0 0 4px; }
.party p { margin: 0; }
table { width: 100%; border-collapse: collapse; }
th, td { padding: 6px 4px; border-bottom: 1px solid #d0d7de; text-align: left; }
th.num, td.num { text-align: right; white-space: nowrap; }
tfoot td { border-bottom: none; }
tfoot tr.total td { font-weight: 700; border-top: 2px solid #1f2328; }
.note { margin-top: 20px; font-style: italic; }
""".strip()


def render_html(document: InvoiceDocument) -> str:
    """The invoice (or credit note) as an HTML page; amounts as Money.formatted ('€1,890.00')."""
    title = escape(f"{document.title} {document.number}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title>",
        f"<style>\n{_STYLE}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(document.title)}</h1>",
        _facts(document),
        '<div class="parties">',
        _party("From", document.seller),
        _party("Bill to", document.buyer),
        "</div>",
        _table(document),
    ]
    parts += [f'<p class="note">{escape(note)}</p>' for note in document.mentions]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _facts(document: InvoiceDocument) -> str:
    rows = "".join(
        f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>" for label, value in document.facts
    )
    return f'<dl class="facts">{rows}</dl>'


def _party(heading: str, party: Party) -> str:
    lines = [f"<strong>{escape(party.name)}</strong>"]
    lines += [escape(line) for line in party.details]
    body = "<br>".join(lines)
    return f'<section class="party"><h2>{escape(heading)}</h2><p>{body}</p></section>'


def _table(document: InvoiceDocument) -> str:
    head = (
        '<thead><tr><th>Description</th><th class="num">Qty</th>'
        f'<th class="num">{escape(UNIT_PRICE_LABEL)}</th>'
        f'<th class="num">{escape(AMOUNT_LABEL)}</th></tr></thead>'
    )
    body = "".join(
        f"<tr><td>{escape(line.description)}</td>"
        f'<td class="num">{line.quantity}</td>'
        f'<td class="num">{escape(document.money(line.unit_amount_minor).formatted)}</td>'
        f'<td class="num">{escape(document.money(line.amount_minor).formatted)}</td></tr>'
        for line in document.lines
    )
    totals = [
        ("", SUBTOTAL_LABEL, document.subtotal.formatted),
        ("", document.tax.label, document.tax_total.formatted),
        (' class="total"', TOTAL_LABEL, document.total.formatted),
    ]
    foot = "".join(
        f'<tr{css}><td colspan="3" class="num">{escape(label)}</td>'
        f'<td class="num">{escape(amount)}</td></tr>'
        for css, label, amount in totals
    )
    return f"<table>{head}<tbody>{body}</tbody><tfoot>{foot}</tfoot></table>"
