"""The embedded billing provider's invoices: their content, as PDF and as HTML.

The PDF renderer (`billing.local.pdf`) is imported where a PDF is made, not here: fpdf and its
fonts take about 25 MB that a worker which never renders a PDF does not need."""

from billing.local.documents import (
    InvoiceDocument,
    InvoiceLine,
    Party,
    format_date,
    format_period,
)
from billing.local.html import render_html

__all__ = [
    "InvoiceDocument",
    "InvoiceLine",
    "Party",
    "format_date",
    "format_period",
    "render_html",
]
