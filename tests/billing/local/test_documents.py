"""Invoice documents: consistent totals, and their PDF and HTML renderings."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import date
from html import escape

import pytest
from pypdf import PdfReader

from billing.local import (
    InvoiceDocument,
    InvoiceLine,
    Party,
    format_date,
    format_period,
    render_html,
)
from billing.local.documents import LATE_PAYMENT_NOTE, NO_DISCOUNT_NOTE, REVERSE_CHARGE_NOTE
from billing.local.pdf import latin1, pdf_amount, render_pdf
from billing.money import Money
from billing.settings import BillingSettings
from billing.tax import TaxDecision, TaxTable

TAXES = TaxTable.load()
SELLER = Party(
    "Tally SAS", ("1 rue de Rivoli", "75001 Paris"), "FR", "FR23334175221", "billing@tally.example"
)
FRENCH_BUYER = Party(
    "Boutique Dupont SARL", ("12 avenue Foch", "69006 Lyon"), "FR", "FR40303265045",
    "compta@dupont.example",
)  # fmt: skip
GERMAN_BUYER = Party(
    "Acme Handel GmbH", ("Hauptstrasse 1", "10115 Berlin"), "DE", "DE136695976", "ap@acme.example"
)
LINES = (
    InvoiceLine.of("Ecommerce Enterprise plan, March 2026", 1, 189_000),
    InvoiceLine.of("Additional seats", 3, 1_550),
)


def invoice(buyer: Party = FRENCH_BUYER, lines: tuple[InvoiceLine, ...] = LINES) -> InvoiceDocument:
    return InvoiceDocument.build(
        number="TLY-2026-0042",
        issued_on=date(2026, 4, 1),
        period_start=date(2026, 3, 1),
        period_end=date(2026, 3, 31),
        seller=SELLER,
        buyer=buyer,
        lines=lines,
        currency="EUR",
        tax=TAXES.decide("FR", buyer.country, buyer.vat_id),
        status="paid",
    )


def pdf_text(document: InvoiceDocument) -> str:
    reader = PdfReader(io.BytesIO(render_pdf(document)))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_build_computes_totals() -> None:
    document = invoice()
    assert document.subtotal_minor == 189_000 + 4_650
    assert document.tax_minor == 38_730
    assert document.total_minor == 232_380
    assert document.total == Money(232_380, "EUR")
    assert document.tax == TaxDecision(2000, False, "VAT 20%")


def test_tax_rounds_half_up_on_the_subtotal() -> None:
    document = invoice(lines=(InvoiceLine.of("Tokens", 1, 5), InvoiceLine.of("Agents", 1, 20)))
    assert (document.subtotal_minor, document.tax_minor, document.total_minor) == (25, 5, 30)
    odd = invoice(lines=(InvoiceLine.of("Tokens", 1, 2_5),))
    assert odd.tax_minor == 5


def test_inconsistent_totals_are_refused() -> None:
    document = invoice()
    with pytest.raises(ValueError, match="subtotal"):
        replace(document, subtotal_minor=document.subtotal_minor + 1)
    with pytest.raises(ValueError, match="tax_minor"):
        replace(document, tax_minor=0)
    with pytest.raises(ValueError, match="total_minor"):
        replace(document, total_minor=0)
    with pytest.raises(ValueError, match="currency"):
        replace(document, currency="euro")
    with pytest.raises(ValueError, match="period ends"):
        replace(document, period_end=date(2026, 2, 1))


def test_party_from_settings() -> None:
    settings = BillingSettings(
        legal_name=None,
        billing_email="ap@acme.example",
        address_line1="Hauptstrasse 1",
        address_line2=None,
        postal_code="10115",
        city="Berlin",
        country="DE",
        vat_id="DE136695976",
    )
    assert Party.from_settings(settings, "Acme") == Party(
        "Acme", ("Hauptstrasse 1", "10115 Berlin"), "DE", "DE136695976", "ap@acme.example"
    )


def test_formatting_helpers() -> None:
    assert format_date(date(2026, 3, 1)) == "1 March 2026"
    assert pdf_amount(Money(189_000, "EUR")) == "1,890.00 EUR"
    assert pdf_amount(Money(-1_050, "USD")) == "-10.50 USD"
    assert pdf_amount(Money(1_500, "JPY")) == "1,500 JPY"
    assert latin1("Łódź \u2013 \u201cZoë\u201d \u20ac5") == 'Lódz - "Zoë" EUR5'
    assert latin1("東京") == "??"


def test_pdf_shows_the_invoice() -> None:
    document = invoice()
    text = pdf_text(document)
    expected = [
        "Invoice",
        "TLY-2026-0042",
        "1 April 2026",
        "1 March 2026 to 31 March 2026",
        "Paid",
        "Tally SAS",
        "1 rue de Rivoli",
        "VAT ID: FR23334175221",
        "Boutique Dupont SARL",
        "12 avenue Foch",
        "VAT ID: FR40303265045",
        "compta@dupont.example",
        "Ecommerce Enterprise plan, March 2026",
        "1,890.00 EUR",
        "Additional seats",
        "15.50 EUR",
        "46.50 EUR",
        "Unit price (excl.",
        "Amount (excl. VAT)",
        "Subtotal (excl. VAT) 1,936.50 EUR",
        "VAT 20% 387.30 EUR",
        "Total (incl. VAT) 2,323.80 EUR",
    ]
    missing = [item for item in expected if item not in text]
    assert not missing, f"missing from the PDF: {missing}\n{text}"
    assert "reverse charge" not in text


def test_pdf_reverse_charge() -> None:
    text = pdf_text(invoice(GERMAN_BUYER))
    assert "VAT reverse charge (Article 196, Directive 2006/112/EC)" in text
    assert "VAT reverse charge: the buyer accounts for the VAT" in text
    assert "VAT ID: DE136695976" in text
    assert "0.00 EUR" in text
    assert "1,936.50 EUR" in text


def test_pdf_metadata_and_determinism() -> None:
    document = invoice()
    data = render_pdf(document)
    assert data.startswith(b"%PDF-")
    metadata = PdfReader(io.BytesIO(data)).metadata
    assert metadata is not None
    assert metadata.title == "Invoice TLY-2026-0042"
    assert metadata.creation_date is not None
    assert metadata.creation_date.date() == date(2026, 4, 1)
    assert render_pdf(document) == data


def test_pdf_survives_text_outside_latin1() -> None:
    buyer = replace(
        FRENCH_BUYER,
        name="Łódź Trading \u2013 \u201cZoë\u201d 東京",
        address_lines=("ul. Piotrkowska 1",),
    )
    text = pdf_text(invoice(buyer))
    assert 'Lódz Trading - "Zoë" ??' in text


def test_pdf_long_invoice_spans_pages() -> None:
    lines = tuple(InvoiceLine.of(f"Usage line {index}", index, 100) for index in range(1, 80))
    document = invoice(lines=lines)
    reader = PdfReader(io.BytesIO(render_pdf(document)))
    assert len(reader.pages) > 1
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "Usage line 79" in text
    assert pdf_amount(document.total) in text


def test_html_shows_the_invoice() -> None:
    page = render_html(invoice(GERMAN_BUYER))
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Invoice TLY-2026-0042</title>" in page
    for item in [
        "1 April 2026",
        "1 March 2026 to 31 March 2026",
        "Tally SAS",
        "Acme Handel GmbH",
        "VAT ID: DE136695976",
        "Ecommerce Enterprise plan, March 2026",
        "€1,890.00",
        "€15.50",
        "€46.50",
        "€1,936.50",
        "VAT reverse charge (Article 196, Directive 2006/112/EC)",
        "€0.00",
        "VAT reverse charge: the buyer accounts for the VAT",
    ]:
        assert item in page, item
    assert "<script" not in page


def test_html_escapes_everything() -> None:
    buyer = replace(FRENCH_BUYER, name="<script>alert('x')</script>", email='a"b@example.com')
    hostile_line = InvoiceLine.of("Seats & <b>more</b>", 1, 100)
    page = render_html(invoice(buyer, lines=(hostile_line,)))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Seats &amp; &lt;b&gt;more&lt;/b&gt;" in page
    assert "a&quot;b@example.com" in page
    assert "reverse charge" not in page


SELLER_WITH_IDENTITY = replace(
    SELLER, legal_form="SAS au capital de 10 000 €", registration="RCS Paris 333 417 522"
)


def due(document: InvoiceDocument, due_on: date | None) -> InvoiceDocument:
    return replace(document, due_on=due_on, status="open")


def test_due_date_terms_and_seller_identity_are_printed_in_pdf_and_html() -> None:
    document = replace(due(invoice(), date(2026, 5, 1)), seller=SELLER_WITH_IDENTITY)
    terms = "Payment terms: within 30 days of the invoice date, by 1 May 2026."
    assert document.facts[3:] == [("Due date", "1 May 2026"), ("Status", "Open")]
    text, page = pdf_text(document), render_html(document)
    for item in ("Due date 1 May 2026", terms, "SAS au capital de 10 000 EUR",
                 "RCS Paris 333 417 522"):  # fmt: skip
        assert item in text.replace("\n", " "), item
    for item in ("<dt>Due date</dt><dd>1 May 2026</dd>", terms, "SAS au capital de 10 000 €",
                 "RCS Paris 333 417 522", "Unit price (excl. VAT)", "Amount (excl. VAT)",
                 "Subtotal (excl. VAT)", "Total (incl. VAT)"):  # fmt: skip
        assert item in page, item
    assert due(invoice(), date(2026, 4, 1)).mentions[0] == (
        "Payment terms: on receipt, by 1 April 2026."
    )
    with pytest.raises(ValueError, match="due date"):
        due(invoice(), date(2026, 3, 31))


def test_late_payment_mentions_for_a_business_buyer_of_a_french_seller_only() -> None:
    business = invoice(FRENCH_BUYER).mentions
    assert business[-2:] == [LATE_PAYMENT_NOTE, NO_DISCOUNT_NOTE]
    assert "L441-10" in LATE_PAYMENT_NOTE and "D441-5" in LATE_PAYMENT_NOTE
    assert "EUR 40" in LATE_PAYMENT_NOTE
    consumer = replace(FRENCH_BUYER, vat_id=None)
    assert invoice(consumer).mentions == []
    german_seller = replace(invoice(FRENCH_BUYER), seller=replace(SELLER, country="DE"))
    assert german_seller.mentions == []
    page = render_html(invoice(GERMAN_BUYER))
    assert REVERSE_CHARGE_NOTE in page and escape(LATE_PAYMENT_NOTE) in page
    assert "No discount for early payment." in pdf_text(invoice(GERMAN_BUYER))


def test_a_credit_note_reverses_the_vat_and_names_the_invoice() -> None:
    note = InvoiceDocument.build(
        number="TAL-2026-000043",
        issued_on=date(2026, 4, 15),
        period_start=date(2026, 4, 15),
        period_end=date(2026, 4, 30),
        seller=SELLER,
        buyer=FRENCH_BUYER,
        lines=[
            InvoiceLine.of("Unused time on Scale plan, 15 April 2026 to 30 April 2026", 1, -2_5),
            InvoiceLine.of("Growth plan, 15 April 2026 to 30 April 2026 (prorated)", 1, 0),
        ],
        currency="EUR",
        tax=TaxDecision(2000, False, "VAT 20%"),
        status="issued",
        kind="credit_note",
        credited_number="TAL-2026-000042",
    )
    assert (note.subtotal_minor, note.tax_minor, note.total_minor) == (-25, -5, -30)
    assert note.title == "Credit note"
    assert note.mentions == []
    assert ("Credits invoice", "TAL-2026-000042") in note.facts
    text = pdf_text(note)
    for item in ("Credit note", "Credit note number TAL-2026-000043",
                 "Credits invoice TAL-2026-000042", "Total (incl. VAT) -0.30 EUR"):  # fmt: skip
        assert item in text, item
    assert "Late payment" not in text
    page = render_html(note)
    assert "<h1>Credit note</h1>" in page and "-€0.30" in page
    with pytest.raises(ValueError, match="names the invoice"):
        replace(note, credited_number=None)
    with pytest.raises(ValueError, match="names the invoice"):
        replace(invoice(), credited_number="TAL-2026-000001")


def test_one_period_convention_first_and_last_day_included() -> None:
    assert format_period(date(2026, 11, 28), date(2026, 11, 30)) == (
        "28 November 2026 to 30 November 2026"
    )
    assert invoice().period == format_period(date(2026, 3, 1), date(2026, 3, 31))
