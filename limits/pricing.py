"""The model price table: what a token event costs, computed once at ingestion."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

from core.resources import load_toml, packaged

BUILTIN_PRICES = packaged("limits", "model_prices.toml")
MICROS = 1_000_000


class PriceTableError(ValueError):
    """The price file is malformed."""


@dataclass(frozen=True)
class ModelPrice:
    """Prices per million input and output tokens, in the table's currency."""

    input: Decimal
    output: Decimal


class PriceTable:
    """Prices per model; costs are integers in millionths of `currency`."""

    def __init__(self, currency: str, prices: dict[str, ModelPrice]) -> None:
        self.currency = currency
        self._prices = prices

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        document = load_toml(path, BUILTIN_PRICES, "price file", PriceTableError)
        source, data = document.source, document.data
        currency = data.get("currency")
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isupper():
            raise PriceTableError(f"price file {source} needs currency = an ISO code like 'USD'")
        prices: dict[str, ModelPrice] = {}
        for model, entry in (data.get("models") or {}).items():
            try:
                input_price = Decimal(str(entry["input"]))
                output_price = Decimal(str(entry.get("output", entry["input"])))
            except (KeyError, TypeError, InvalidOperation):
                raise PriceTableError(
                    f"price file {source}: model {model!r} needs input (and output) as decimal "
                    "strings per million tokens"
                ) from None
            if input_price < 0 or output_price < 0:
                raise PriceTableError(f"price file {source}: model {model!r} has a negative price")
            prices[model] = ModelPrice(input_price, output_price)
        return cls(currency, prices)

    def __contains__(self, model: object) -> bool:
        return model in self._prices

    def cost_micros(
        self, model: str | None, amount: int, input_tokens: int | None, output_tokens: int | None
    ) -> int | None:
        """The cost of `amount` tokens of `model`, or None when the model has no price.

        With a split, each part at its price; without one, the input price applies.
        """
        price = self._prices.get(model) if model else None
        if price is None:
            return None
        if input_tokens is None and output_tokens is None:
            cost = price.input * amount
        else:
            cost = price.input * (input_tokens or 0) + price.output * (output_tokens or 0)
        return int(cost.to_integral_value(rounding=ROUND_HALF_UP))
