"""The Stripe provider (`billing.stripe.provider`): the only package that imports `stripe`.

Nothing is imported here: the webhook handlers (`billing.stripe.events`) run in every worker,
while the `stripe` SDK (about 13 MB) loads only where the Stripe provider is chosen."""
