"""An invoice as a PDF, drawn with fpdf2's core Helvetica font (Latin-1 text only)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, time
from decimal import Decimal

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace

from billing.local.documents import (
    AMOUNT_LABEL,
    SUBTOTAL_LABEL,
    TOTAL_LABEL,
    UNIT_PRICE_LABEL,
    InvoiceDocument,
    Party,
)
from billing.money import Money, minor_digits

_FONT = "Helvetica"
_MARGIN = 20.0
_LINE = 5.5
_TRANSLITERATIONS = str.maketrans(
    {
        "\u2013": "-",
        "\u2014": "-",
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2026": "...",
        "\u20ac": "EUR",
        "\u0141": "L",
        "\u0142": "l",
        "\u0110": "D",
        "\u0111": "d",
        "\u0152": "OE",
        "\u0153": "oe",
    }
)


def render_pdf(document: InvoiceDocument) -> bytes:
    """The invoice (or credit note) as PDF bytes; the same document always gives the same
    bytes."""
    pdf = FPDF(format="A4")
    pdf.set_margins(_MARGIN, _MARGIN, _MARGIN)
    pdf.set_auto_page_break(auto=True, margin=_MARGIN)
    pdf.set_title(f"{document.title} {document.number}")
    pdf.set_author(document.seller.name)
    pdf.set_creator("Tally")
    pdf.set_lang("en")
    pdf.set_creation_date(datetime.combine(document.issued_on, time(), tzinfo=UTC))
    pdf.add_page()
    _header(pdf, document)
    _parties(pdf, document)
    _lines(pdf, document)
    _totals(pdf, document)
    _mentions(pdf, document)
    return bytes(pdf.output())


def pdf_amount(money: Money) -> str:
    """'1,890.00 EUR': the currency code after the number, as Helvetica has no euro sign."""
    digits = minor_digits(money.currency)
    sign = "-" if money.amount_minor < 0 else ""
    units = Decimal(abs(money.amount_minor)).scaleb(-digits)
    return f"{sign}{units:,.{digits}f} {money.currency}"


def latin1(text: str) -> str:
    """The text in Latin-1: common punctuation and accented letters approximated, others as '?'."""
    chars = []
    for char in text.translate(_TRANSLITERATIONS):
        if ord(char) < 256:
            chars.append(char)
            continue
        base = unicodedata.normalize("NFKD", char).encode("latin-1", "ignore").decode("latin-1")
        chars.append(base or "?")
    return "".join(chars)


def _header(pdf: FPDF, document: InvoiceDocument) -> None:
    pdf.set_font(_FONT, "B", 22)
    pdf.cell(0, 12, document.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for label, value in document.facts:
        pdf.set_font(_FONT, "B", 10)
        pdf.cell(40, _LINE, label)
        pdf.set_font(_FONT, "", 10)
        pdf.cell(0, _LINE, latin1(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(6)


def _parties(pdf: FPDF, document: InvoiceDocument) -> None:
    top = pdf.get_y()
    half = pdf.epw / 2
    seller_bottom = _party(pdf, "From", document.seller, pdf.l_margin, top, half - 5)
    buyer_bottom = _party(pdf, "Bill to", document.buyer, pdf.l_margin + half, top, half)
    pdf.set_xy(pdf.l_margin, max(seller_bottom, buyer_bottom) + 8)


def _party(pdf: FPDF, heading: str, party: Party, x: float, y: float, width: float) -> float:
    pdf.set_xy(x, y)
    pdf.set_font(_FONT, "B", 9)
    pdf.cell(width, _LINE, heading.upper(), new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(_FONT, "B", 10)
    pdf.multi_cell(width, _LINE, latin1(party.name), new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(_FONT, "", 10)
    for detail in party.details:
        pdf.multi_cell(width, _LINE, latin1(detail), new_x=XPos.LEFT, new_y=YPos.NEXT)
    return pdf.get_y()


def _lines(pdf: FPDF, document: InvoiceDocument) -> None:
    pdf.set_font(_FONT, "", 10)
    with pdf.table(
        col_widths=(85, 13, 36, 36),
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
        borders_layout="HORIZONTAL_LINES",
        headings_style=FontFace(emphasis="BOLD"),
        line_height=_LINE + 1,
    ) as table:
        table.row(("Description", "Qty", UNIT_PRICE_LABEL, AMOUNT_LABEL))
        for line in document.lines:
            table.row(
                (
                    latin1(line.description),
                    str(line.quantity),
                    pdf_amount(document.money(line.unit_amount_minor)),
                    pdf_amount(document.money(line.amount_minor)),
                )
            )
    pdf.ln(4)


def _totals(pdf: FPDF, document: InvoiceDocument) -> None:
    rows = [
        (SUBTOTAL_LABEL, document.subtotal, ""),
        (document.tax.label, document.tax_total, ""),
        (TOTAL_LABEL, document.total, "B"),
    ]
    label_width, amount_width = 100.0, 35.0
    label_x = pdf.l_margin + pdf.epw - label_width - amount_width
    if pdf.will_page_break(_LINE * 5 + 12):
        pdf.add_page()
    for label, amount, style in rows:
        pdf.set_font(_FONT, style, 10)
        top = pdf.get_y()
        pdf.set_x(label_x)
        pdf.multi_cell(label_width, _LINE, latin1(label), align="R", new_y=YPos.NEXT)
        bottom = pdf.get_y()
        pdf.set_xy(label_x + label_width, top)
        pdf.cell(amount_width, _LINE, pdf_amount(amount), align="R")
        pdf.set_xy(pdf.l_margin, bottom)


def _mentions(pdf: FPDF, document: InvoiceDocument) -> None:
    if not document.mentions:
        return
    pdf.ln(6)
    pdf.set_font(_FONT, "I", 9)
    for note in document.mentions:
        pdf.multi_cell(0, _LINE, latin1(note), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1)
