"""The audit log: who changed what in an organization, when, from what to what."""

from core.audit.log import Actor, AuditPage, acting, current_actor, page, record
from core.audit.models import AuditEntry

__all__ = ["Actor", "AuditEntry", "AuditPage", "acting", "current_actor", "page", "record"]
