"""Organizations, their members and their API keys."""

from tally.orgs.models import ApiKey, Member, Organization, Role

__all__ = ["ApiKey", "Member", "Organization", "Role"]
