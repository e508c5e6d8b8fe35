"""The embedded billing provider's invoices: their content, as PDF and as HTML."""

from billing.local.documents import (
    InvoiceDocument,
    InvoiceLine,
    Party,
    format_date,
    format_period,
)
from billing.local.html import render_html
from billing.local.pdf import pdf_amount, render_pdf

__all__ = [
    "InvoiceDocument",
    "InvoiceLine",
    "Party",
    "format_date",
    "format_period",
    "pdf_amount",
    "render_html",
    "render_pdf",
]
