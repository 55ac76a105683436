"""Roles and what each may do. This table is the whole access policy of the foundation; services ask
`authz.allowed(...)`, never a role name, so API, UI and CLI get the same answer.

Scope: ALL = any organization, OWN = the actor's own organization (plus organizations that granted the
actor's organization access, see org.models.AccessGrant).

三员分立: the platform (system) administrator runs organizations and accounts, the security administrator
holds roles, unlocks and two-factor resets, the audit administrator reads the audit trail. No person may hold
two of the three and no permission appears under two of them.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _

ALL = "all"
OWN = "own"


class Role(models.TextChoices):
    PLATFORM_ADMIN = "platform_admin", _("Platform administrator")
    SECURITY_ADMIN = "security_admin", _("Security administrator")
    AUDIT_ADMIN = "audit_admin", _("Audit administrator")
    LEADING_GROUP = "leading_group", _("Leading-group member")
    DATA_OFFICER = "data_officer", _("Department data officer")
    DATA_STEWARD = "data_steward", _("Data steward")
    CATALOG_REVIEWER = "catalog_reviewer", _("Catalog reviewer")
    APP_DEVELOPER = "app_developer", _("Application-system developer")
    STAFF = "staff", _("Staff")


ADMIN_TRIO = frozenset({Role.PLATFORM_ADMIN, Role.SECURITY_ADMIN, Role.AUDIT_ADMIN})
# Roles whose holders must use two-factor authentication before they can do anything.
TWO_FACTOR_REQUIRED = ADMIN_TRIO


class Perm(models.TextChoices):
    ORG_MANAGE = "org.manage", _("Create and edit organizations")
    USER_VIEW = "user.view", _("See user accounts")
    USER_MANAGE = "user.manage", _("Create, edit and deactivate user accounts")
    ROLE_ASSIGN = "role.assign", _("Assign and remove roles")
    USER_UNLOCK = "user.unlock", _("Unlock accounts and reset two-factor")
    GRANT_MANAGE = "grant.manage", _("Grant other organizations access")
    SYSTEM_VIEW = "system.view", _("See application systems")
    SYSTEM_MANAGE = "system.manage", _("Register application systems and issue API keys")
    APIKEY_REVOKE = "apikey.revoke", _("Revoke API keys")
    AUDIT_VIEW = "audit.view", _("Search and export the audit trail")
    CATALOG_EDIT = "catalog.edit", _("Register and edit catalog resources")
    CATALOG_SUBMIT = "catalog.submit", _("Submit catalog resources for review and deprecate them")
    CATALOG_DRAFTS = "catalog.drafts", _("See catalog resources that are not yet published")
    CATALOG_REVIEW = "catalog.review", _("Review and publish catalog resources")
    STANDARD_MANAGE = "standard.manage", _("Maintain data elements and code tables")
    DATA_LOAD = "data.load", _("Load data into the warehouse and read quarantined rows")
    QUALITY_MANAGE = "quality.manage", _("Maintain a resource's quality rules and load settings")
    TICKET_HANDLE = "ticket.handle", _("Handle correction tickets on the organization's resources")
    TICKET_OVERSEE = "ticket.oversee", _("See and decide every correction ticket")
    SHARE_VIEW = "share.view", _("See sharing applications, grants and use")
    SHARE_APPLY = "share.apply", _("Apply for shared data for the organization's application systems")
    SHARE_DECIDE = "share.decide", _("Decide applications for the organization's resources and revoke grants")
    SHARE_OVERSEE = "share.oversee", _("Approve important and core resources' sharing and decide overdue applications")
    SECURITY_MONITOR = "security.monitor", _("See, acknowledge and escalate security alerts")


ROLE_PERMISSIONS: dict[str, dict[str, str]] = {
    Role.PLATFORM_ADMIN: {
        Perm.ORG_MANAGE: ALL,
        Perm.USER_VIEW: ALL,
        Perm.USER_MANAGE: ALL,
        Perm.SYSTEM_VIEW: ALL,
        Perm.GRANT_MANAGE: ALL,
    },
    Role.SECURITY_ADMIN: {
        Perm.USER_VIEW: ALL,
        Perm.ROLE_ASSIGN: ALL,
        Perm.USER_UNLOCK: ALL,
        Perm.APIKEY_REVOKE: ALL,
        Perm.SECURITY_MONITOR: ALL,
    },
    Role.AUDIT_ADMIN: {
        Perm.AUDIT_VIEW: ALL,
    },
    Role.LEADING_GROUP: {
        Perm.USER_VIEW: ALL,
        Perm.SYSTEM_VIEW: ALL,
        Perm.TICKET_OVERSEE: ALL,
        Perm.SHARE_VIEW: ALL,
    },
    Role.CATALOG_REVIEWER: {
        Perm.USER_VIEW: OWN,
        Perm.CATALOG_DRAFTS: ALL,
        Perm.CATALOG_REVIEW: ALL,
        Perm.STANDARD_MANAGE: ALL,
        Perm.TICKET_OVERSEE: ALL,
        Perm.SHARE_VIEW: ALL,
        Perm.SHARE_OVERSEE: ALL,
    },
    Role.DATA_OFFICER: {
        Perm.CATALOG_EDIT: OWN,
        Perm.CATALOG_SUBMIT: OWN,
        Perm.CATALOG_DRAFTS: OWN,
        Perm.USER_VIEW: OWN,
        Perm.SYSTEM_VIEW: OWN,
        Perm.SYSTEM_MANAGE: OWN,
        Perm.APIKEY_REVOKE: OWN,
        Perm.GRANT_MANAGE: OWN,
        Perm.DATA_LOAD: OWN,
        Perm.QUALITY_MANAGE: OWN,
        Perm.TICKET_HANDLE: OWN,
        Perm.SHARE_VIEW: OWN,
        Perm.SHARE_APPLY: OWN,
        Perm.SHARE_DECIDE: OWN,
    },
    Role.DATA_STEWARD: {
        Perm.CATALOG_EDIT: OWN,
        Perm.DATA_LOAD: OWN,
        Perm.QUALITY_MANAGE: OWN,
        Perm.TICKET_HANDLE: OWN,
        Perm.CATALOG_DRAFTS: OWN,
        Perm.USER_VIEW: OWN,
        Perm.SYSTEM_VIEW: OWN,
        Perm.SHARE_VIEW: OWN,
    },
    Role.APP_DEVELOPER: {
        Perm.CATALOG_DRAFTS: OWN,
        Perm.USER_VIEW: OWN,
        Perm.SYSTEM_VIEW: OWN,
        Perm.SYSTEM_MANAGE: OWN,
        Perm.APIKEY_REVOKE: OWN,
        Perm.SHARE_VIEW: OWN,
        Perm.SHARE_APPLY: OWN,
    },
    Role.STAFF: {
        Perm.CATALOG_DRAFTS: OWN,
        Perm.USER_VIEW: OWN,
        Perm.SYSTEM_VIEW: OWN,
        Perm.SHARE_VIEW: OWN,
    },
}

# Roles only members of certain kinds of organization may hold: the catalog's reviewers are the platform
# office's (the plan makes it the lead unit of the catalog).
ROLE_ORGANIZATION_KINDS = {Role.CATALOG_REVIEWER: frozenset({"platform_office"})}

# Permissions an AccessGrant may extend to another organization (read-only ones).
GRANTABLE = frozenset({Perm.USER_VIEW, Perm.SYSTEM_VIEW})
