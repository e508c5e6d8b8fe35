"""The Stripe provider: the only package that imports `stripe`."""

from billing.stripe.provider import StripeProvider

__all__ = ["StripeProvider"]
