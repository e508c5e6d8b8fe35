"""The model price table: what a token event costs, computed once at ingestion."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
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
    _input_ratio: tuple[int, int] = field(init=False, repr=False, compare=False)
    _output_ratio: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_input_ratio", self.input.as_integer_ratio())
        object.__setattr__(self, "_output_ratio", self.output.as_integer_ratio())

    def cost_micros(self, amount: int, input_tokens: int | None, output_tokens: int | None) -> int:
        """The cost of `amount` tokens in millionths of the currency, rounded half away from
        zero: with a split, each part at its price; without one, the input price applies.

        A price per million tokens is a cost in micros per token, so the cost is
        price times tokens, computed exactly on the prices' integer ratios."""
        input_numerator, input_denominator = self._input_ratio
        if input_tokens is None and output_tokens is None:
            return _round_half_up(input_numerator * amount, input_denominator)
        output_numerator, output_denominator = self._output_ratio
        return _round_half_up(
            input_numerator * output_denominator * (input_tokens or 0)
            + output_numerator * input_denominator * (output_tokens or 0),
            input_denominator * output_denominator,
        )


def _round_half_up(numerator: int, denominator: int) -> int:
    """`numerator / denominator` (denominator > 0) to the nearest integer, halves away from
    zero (Decimal's ROUND_HALF_UP)."""
    quotient, remainder = divmod(abs(numerator), denominator)
    rounded = quotient + (2 * remainder >= denominator)
    return rounded if numerator >= 0 else -rounded


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
            if not (input_price.is_finite() and output_price.is_finite()):
                raise PriceTableError(f"price file {source}: model {model!r} needs finite prices")
            if input_price < 0 or output_price < 0:
                raise PriceTableError(f"price file {source}: model {model!r} has a negative price")
            prices[model] = ModelPrice(input_price, output_price)
        return cls(currency, prices)

    def __contains__(self, model: object) -> bool:
        return model in self._prices

    def price(self, model: str | None) -> ModelPrice | None:
        """The price of `model`, or None when it has none."""
        return self._prices.get(model) if model else None

    def cost_micros(
        self, model: str | None, amount: int, input_tokens: int | None, output_tokens: int | None
    ) -> int | None:
        """The cost of `amount` tokens of `model` (`ModelPrice.cost_micros`), or None when
        the model has no price."""
        price = self.price(model)
        return None if price is None else price.cost_micros(amount, input_tokens, output_tokens)
