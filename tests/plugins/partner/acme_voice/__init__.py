"""A partner's package, as it would be installed: it adds the `voice_minutes` resource."""
