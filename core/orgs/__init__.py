"""Organizations, their members and their API keys."""

from core.orgs.models import ApiKey, Member, Organization, Role

__all__ = ["ApiKey", "Member", "Organization", "Role"]
