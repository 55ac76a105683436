"""Organizations, people, roles, application systems and keys, sign-in. Every rule and every permission
check of the foundation lives here; the API, the UI and the CLI only parse input and call these functions.

Scoping is written once, in `authz.scope()`: objects that belong to an organization are visible to a
user of that organization, to roles whose permission reaches all organizations, and to organizations the
owner granted access to (AccessGrant). Everything else answers "not found", so its existence does not leak.
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import secrets
from dataclasses import dataclass, field

import pyotp
import segno
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from shuzheng.audit import services as audit
from shuzheng.core.crypto import sm3_hex
from shuzheng.core.errors import (
    AuthenticationFailed,
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from shuzheng.org.models import (
    AccessGrant,
    ApiKey,
    ApplicationSystem,
    Organization,
    Region,
    User,
    UserRole,
)
from shuzheng.org.roles import ADMIN_TRIO, ALL, GRANTABLE, ROLE_ORGANIZATION_KINDS, ROLE_PERMISSIONS, Perm, Role

# --------------------------------------------------------------------------------------------------
# Who is acting
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """The person, application system or operator behind a call, and where the call came from."""

    user: User | None = None
    system: ApplicationSystem | None = None
    ip: str = ""
    label: str = "anonymous"
    # The `shuzheng` command runs on the server with the database's credentials; it is trusted, and audited.
    operator: bool = False

    @property
    def name(self) -> str:
        if self.user is not None:
            return self.user.username
        if self.system is not None:
            return f"system:{self.system.code}"
        return self.label

    @property
    def organization(self) -> Organization | None:
        if self.user is not None:
            return self.user.organization
        if self.system is not None:
            return self.system.organization
        return None

    @property
    def org_code(self) -> str:
        org = self.organization
        return org.code if org else ""

    @classmethod
    def cli(cls) -> "Actor":
        return cls(label=f"cli:{getpass.getuser()}", ip="127.0.0.1", operator=True)

    @classmethod
    def from_request(cls, request) -> "Actor":
        ip = client_ip(request)
        system = getattr(request, "system", None)
        if system is not None:
            return cls(system=system, ip=ip)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return cls(user=user, ip=ip)
        return cls(ip=ip)


def presented_key(headers, ckan: bool = False) -> str:
    """The API key a request presents: `Authorization: Bearer …` or `X-API-Key: …`; CKAN's clients also send
    it bare in `Authorization` or in `X-CKAN-API-Key` (`ckan`)."""
    header = headers.get("Authorization", "").strip()
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    if ckan:
        return header or headers.get("X-CKAN-API-Key", "").strip() or headers.get("X-API-Key", "").strip()
    return headers.get("X-API-Key", "").strip()


def request_actor(request, raw_key: str) -> "Actor":
    """The caller of a plain (non-Ninja) view: the application system whose key was presented (a key that does
    not authenticate raises 401, audited: never downgraded to the public), else the signed-in user, else the
    public."""
    if raw_key:
        request.system = authenticate_api_key(raw_key, client_ip(request))
    return Actor.from_request(request)


def client_ip(request) -> str:
    """The caller's address for audit and (later) address allow-lists. Behind the city's reverse proxy set
    SHUZHENG_TRUST_X_FORWARDED_FOR=1: the proxy appends the address it saw, so the rightmost entry is the
    one to trust (entries to its left come from the client and can be forged). Never anything but an IP."""
    candidates = [request.META.get("REMOTE_ADDR", "")]
    if settings.TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            candidates.insert(0, forwarded.split(",")[-1].strip())
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return ""


# --------------------------------------------------------------------------------------------------
# Authorization and scoping
# --------------------------------------------------------------------------------------------------


class authz:
    @staticmethod
    def reach(actor: Actor, perm: str) -> str | None:
        """ALL, OWN or None: the widest scope any of the actor's roles gives for `perm`."""
        if actor.operator:
            return ALL
        if actor.user is None or not actor.user.is_active:
            return None
        best = None
        for role in actor.user.role_set:
            scope = ROLE_PERMISSIONS.get(role, {}).get(perm)
            if scope == ALL:
                return ALL
            best = best or scope
        return best

    @staticmethod
    def org_ids(actor: Actor, perm: str) -> set | None:
        """Organizations whose objects the actor may reach with `perm`; None means every organization."""
        scope = authz.reach(actor, perm)
        if scope == ALL:
            return None
        if scope is None:
            return set()
        own = actor.organization
        ids = {own.id}
        if perm in GRANTABLE:
            now = timezone.now()
            ids |= set(
                AccessGrant.objects.filter(grantee=own, permission=perm, revoked_at__isnull=True)
                .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
                .values_list("owner_id", flat=True)
            )
        return ids

    @staticmethod
    def allowed(actor: Actor, perm: str, org: Organization | None = None) -> bool:
        ids = authz.org_ids(actor, perm)
        if ids is None:
            return True
        if org is None:
            return bool(ids)
        return org.id in ids

    @staticmethod
    def require(actor: Actor, perm: str, org: Organization | None = None) -> None:
        if not authz.allowed(actor, perm, org):
            raise Forbidden(_("You do not have permission to do this."))

    @staticmethod
    def scope(actor: Actor, perm: str, qs: QuerySet, org_field: str = "organization") -> QuerySet:
        ids = authz.org_ids(actor, perm)
        if ids is None:
            return qs
        return qs.filter(**{f"{org_field}_id__in": ids})


def _clean(instance, exclude=None) -> None:
    """Model validation as a service error: every message names its field."""
    try:
        instance.full_clean(exclude=exclude)
    except ValidationError as exc:
        errors = [
            FieldError(name if name != "__all__" else "non_field", message)
            for name, messages in exc.message_dict.items()
            for message in messages
        ]
        raise ValidationFailed(errors[0].message, errors) from None


def _diff(before: dict, after: dict) -> dict:
    """{field: [old, new]} for the fields that changed: the summary an update's audit record carries."""
    return {k: [before[k], after[k]] for k in after if before[k] != after[k]}


def _require_fields(data: dict, names: list[str]) -> None:
    missing = [FieldError(n, _("This field is required.")) for n in names if not str(data.get(n) or "").strip()]
    if missing:
        raise ValidationFailed(_("Required fields are missing."), missing)


# --------------------------------------------------------------------------------------------------
# Regions and organizations (D1)
# --------------------------------------------------------------------------------------------------


def list_regions(parent: str = "", level: str = "") -> QuerySet:
    """Regions are public reference data (GB/T 2260 and the statistical division codes below it)."""
    qs = Region.objects.select_related("parent")
    if parent:
        qs = qs.filter(parent__code=parent)
    if level:
        qs = qs.filter(level=level)
    return qs


def get_region(code: str, field_name: str = "region") -> Region:
    region = Region.objects.filter(code=code).first()
    if region is None:
        raise ValidationFailed.of(field_name, _("Unknown region code %(code)s.") % {"code": code})
    return region


def save_region(actor: Actor, code: str, name: str, level: str, parent_code: str | None) -> Region:
    """Creates or renames a region (used by the demo loader and administrators)."""
    authz.require(actor, Perm.ORG_MANAGE)
    parent = get_region(parent_code, "parent") if parent_code else None
    with transaction.atomic():
        region = Region.objects.filter(code=code).first() or Region(code=code)
        before = (region.name, region.level, region.parent_id)
        region.name, region.level, region.parent = name, level, parent
        region.path = (parent.path if parent else "") + code + "/"
        _clean(region, exclude=["path"])
        if before == (region.name, region.level, region.parent_id):
            return region
        creating = region._state.adding
        region.save()
        audit.record(actor, "region.create" if creating else "region.update", region,
                     summary={"code": code, "name": name, "level": level, "parent": parent_code})
    return region


def get_organization(code: str, field_name: str = "organization") -> Organization:
    org = Organization.objects.select_related("region", "parent").filter(code=code).first()
    if org is None:
        raise ValidationFailed.of(field_name, _("Unknown organization %(code)s.") % {"code": code})
    return org


def find_organization(code: str) -> Organization:
    org = Organization.objects.select_related("region", "parent").filter(code=code).first()
    if org is None:
        raise NotFound(_("No organization with code %(code)s.") % {"code": code})
    return org


def list_organizations(q: str = "", kind: str = "") -> QuerySet:
    """Organizations are public inside government: every signed-in user sees the whole list."""
    qs = Organization.objects.select_related("region", "parent")
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(short_name__icontains=q) | Q(code__iexact=q))
    if kind:
        qs = qs.filter(kind=kind)
    return qs


ORG_FIELDS = ("code", "name", "short_name", "name_en", "kind", "parent", "region", "is_active")


def _org_snapshot(org: Organization) -> dict:
    return {
        "code": org.code,
        "name": org.name,
        "short_name": org.short_name,
        "name_en": org.name_en,
        "kind": org.kind,
        "parent": org.parent.code if org.parent_id else None,
        "region": org.region.code if org.region_id else None,
        "is_active": org.is_active,
    }


def _apply_org(org: Organization, data: dict) -> None:
    for name in ("code", "name", "short_name", "name_en", "kind", "is_active"):
        if name in data and data[name] is not None:
            setattr(org, name, data[name].strip() if isinstance(data[name], str) else data[name])
    if "region" in data and data["region"]:
        org.region = get_region(data["region"])
    if "parent" in data:
        org.parent = get_organization(data["parent"], "parent") if data["parent"] else None
        ancestor = org.parent
        while ancestor is not None:
            if ancestor.pk == org.pk:
                raise ValidationFailed.of("parent", _("An organization cannot be placed under itself."))
            ancestor = ancestor.parent


def create_organization(actor: Actor, data: dict) -> Organization:
    authz.require(actor, Perm.ORG_MANAGE)
    _require_fields(data, ["code", "name", "kind", "region"])
    org = Organization()
    _apply_org(org, data)
    _clean(org)
    with transaction.atomic():
        org.save()
        audit.record(actor, "org.create", org, summary=_org_snapshot(org))
    return org


def update_organization(actor: Actor, code: str, data: dict) -> Organization:
    authz.require(actor, Perm.ORG_MANAGE)
    with transaction.atomic():
        org = find_organization(code)
        before = _org_snapshot(org)
        _apply_org(org, data)
        _clean(org)
        after = _org_snapshot(org)
        changes = _diff(before, after)
        if changes:
            org.save()
            audit.record(actor, "org.update", org, summary={"code": code, "changes": changes})
    return org


# --------------------------------------------------------------------------------------------------
# Users and roles (G1)
# --------------------------------------------------------------------------------------------------

USER_FIELDS = ("full_name", "email", "mobile", "organization", "is_active")


def _user_snapshot(user: User) -> dict:
    return {
        "username": user.username,
        "full_name": user.full_name,
        "email": user.email,
        "mobile": user.mobile,
        "organization": user.organization.code,
        "is_active": user.is_active,
    }


def _check_password(password: str, user: User, field_name: str = "password") -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationFailed(exc.messages[0], [FieldError(field_name, m) for m in exc.messages]) from None


def list_users(actor: Actor, org_code: str = "", q: str = "", role: str = "") -> QuerySet:
    qs = authz.scope(actor, Perm.USER_VIEW, User.objects.select_related("organization"))
    if org_code:
        qs = qs.filter(organization__code=org_code)
    if q:
        qs = qs.filter(Q(username__icontains=q) | Q(full_name__icontains=q))
    if role:
        qs = qs.filter(roles__role=role)
    return qs.prefetch_related("roles")


def get_user(actor: Actor, username: str) -> User:
    """A fresh copy (never the actor's own instance, which a failed edit must not leave changed)."""
    if actor.user is not None and actor.user.username == username:
        qs = User.objects.select_related("organization")  # everyone can see themselves
    else:
        qs = list_users(actor)
    user = qs.filter(username=username).first()
    if user is None:
        raise NotFound(_("No user %(name)s.") % {"name": username})
    return user


# Words the UI uses in user URLs (/users/new/).
RESERVED_USERNAMES = frozenset({"new", "me", "admin-new"})


def create_user(actor: Actor, data: dict) -> User:
    _require_fields(data, ["organization"])
    org = get_organization(data["organization"])
    authz.require(actor, Perm.USER_MANAGE, org)
    _require_fields(data, ["username", "full_name", "password"])
    if data["username"].strip().lower() in RESERVED_USERNAMES:
        raise ValidationFailed.of("username", _("This username is reserved."))
    user = User(
        username=data["username"].strip(),
        full_name=data["full_name"].strip(),
        email=(data.get("email") or "").strip(),
        mobile=(data.get("mobile") or "").strip(),
        organization=org,
    )
    _clean(user, exclude=["password"])
    _check_password(data["password"], user)
    user.set_password(data["password"])
    user.password_changed_at = timezone.now()
    with transaction.atomic():
        user.save()
        audit.record(actor, "user.create", user, summary=_user_snapshot(user))
    return user


def update_user(actor: Actor, username: str, data: dict) -> User:
    with transaction.atomic():
        user = get_user(actor, username)
        authz.require(actor, Perm.USER_MANAGE, user.organization)
        before = _user_snapshot(user)
        for name in ("full_name", "email", "mobile", "is_active"):
            if data.get(name) is not None:
                setattr(user, name, data[name].strip() if isinstance(data[name], str) else data[name])
        if data.get("organization"):
            new_org = get_organization(data["organization"])
            authz.require(actor, Perm.USER_MANAGE, new_org)
            user.organization = new_org
        if actor.user is not None and user.pk == actor.user.pk and data.get("is_active") is False:
            raise ValidationFailed.of("is_active", _("You cannot deactivate your own account."))
        _clean(user, exclude=["password"])
        after = _user_snapshot(user)
        changes = _diff(before, after)
        if not changes:
            return user
        user.save()
        if "organization" in changes:
            try:
                with transaction.atomic():
                    UserRole.objects.filter(user=user).update(organization=user.organization)
            except IntegrityError:
                raise Conflict(
                    _("%(org)s already has a data officer; remove this user's data-officer role first.")
                    % {"org": user.organization.name},
                    [FieldError("organization", _("The new organization already has a data officer."))],
                ) from None
        audit.record(actor, "user.update", user, summary={"username": username, "changes": changes})
    return user


def set_password(actor: Actor, username: str, new_password: str, old_password: str | None = None) -> None:
    """A user changes their own password (old one required); user administrators reset others'."""
    with transaction.atomic():
        user = get_user(actor, username)
        own = actor.user is not None and actor.user.pk == user.pk
        if own:
            if not old_password or not user.check_password(old_password):
                raise ValidationFailed.of("old_password", _("The current password is not correct."))
        else:
            authz.require(actor, Perm.USER_MANAGE, user.organization)
        _check_password(new_password, user, "new_password")
        user.set_password(new_password)
        user.password_changed_at = timezone.now()
        user.save(update_fields=["password", "password_changed_at", "updated_at"])
        audit.record(actor, "user.password_change" if own else "user.password_reset", user,
                     summary={"username": username})


def assign_role(actor: Actor, username: str, role: str) -> UserRole:
    if role not in Role.values:
        raise ValidationFailed.of("role", _("Unknown role %(role)s.") % {"role": role})
    with transaction.atomic():
        user = get_user(actor, username)
        authz.require(actor, Perm.ROLE_ASSIGN, user.organization)
        if actor.user is not None and actor.user.pk == user.pk:
            raise Forbidden(_("Nobody can change their own roles."))
        # Lock the person's row so two concurrent assignments cannot both pass the checks below.
        User.objects.select_for_update().filter(pk=user.pk).first()
        held = set(UserRole.objects.filter(user=user).values_list("role", flat=True))
        if role in held:
            raise Conflict(_("%(user)s already has this role.") % {"user": username}, [FieldError("role", _("Already held."))])
        if role in ADMIN_TRIO and held & ADMIN_TRIO:
            other = Role(next(iter(held & ADMIN_TRIO))).label
            raise ValidationFailed.of(
                "role",
                _("%(user)s is already %(other)s; the three administrator roles must be held by different people.")
                % {"user": username, "other": other},
            )
        kinds = ROLE_ORGANIZATION_KINDS.get(role)
        if kinds and user.organization.kind not in kinds:
            raise ValidationFailed.of("role", _("%(role)s must belong to the platform office.") % {"role": Role(role).label})
        if role == Role.DATA_OFFICER:
            existing = UserRole.objects.filter(organization=user.organization, role=Role.DATA_OFFICER).first()
            if existing is not None:
                raise Conflict(
                    _("%(org)s already has a data officer: %(name)s.")
                    % {"org": user.organization.name, "name": existing.user.username},
                    [FieldError("role", _("One data officer per department."))],
                )
        grant = UserRole.objects.create(user=user, role=role, organization=user.organization, granted_by=actor.name)
        audit.record(actor, "user.role_assign", user, summary={"username": username, "role": role})
    return grant


def remove_role(actor: Actor, username: str, role: str) -> None:
    with transaction.atomic():
        user = get_user(actor, username)
        authz.require(actor, Perm.ROLE_ASSIGN, user.organization)
        if actor.user is not None and actor.user.pk == user.pk:
            raise Forbidden(_("Nobody can change their own roles."))
        deleted, _n = UserRole.objects.filter(user=user, role=role).delete()
        if not deleted:
            raise NotFound(_("%(user)s does not have role %(role)s.") % {"user": username, "role": role})
        audit.record(actor, "user.role_remove", user, summary={"username": username, "role": role})


def unlock_user(actor: Actor, username: str) -> User:
    with transaction.atomic():
        user = get_user(actor, username)
        authz.require(actor, Perm.USER_UNLOCK, user.organization)
        user.failed_logins = 0
        user.locked_until = None
        user.save(update_fields=["failed_logins", "locked_until", "updated_at"])
        audit.record(actor, "user.unlock", user, summary={"username": username})
    return user


def reset_two_factor(actor: Actor, username: str) -> User:
    with transaction.atomic():
        user = get_user(actor, username)
        authz.require(actor, Perm.USER_UNLOCK, user.organization)
        user.totp_secret, user.totp_confirmed_at, user.totp_last_step = "", None, None
        user.save(update_fields=["totp_secret", "totp_confirmed_at", "totp_last_step", "updated_at"])
        audit.record(actor, "user.2fa_reset", user, summary={"username": username})
    return user


def set_large_text(actor: Actor, enabled: bool) -> None:
    user = actor.user
    with transaction.atomic():
        user.large_text = enabled
        user.save(update_fields=["large_text", "updated_at"])
        audit.record(actor, "user.preference", user, summary={"large_text": enabled})


def data_officer_coverage() -> dict:
    """Departments and town governments without a designated data officer (数据官制度)."""
    kinds = [Organization.Kind.DEPARTMENT, Organization.Kind.TOWN, Organization.Kind.PLATFORM_OFFICE]
    orgs = Organization.objects.filter(kind__in=kinds, is_active=True)
    covered = set(UserRole.objects.filter(role=Role.DATA_OFFICER).values_list("organization_id", flat=True))
    missing = [o for o in orgs if o.id not in covered]
    return {"organizations": orgs.count(), "missing": missing}


# --------------------------------------------------------------------------------------------------
# Access grants between organizations
# --------------------------------------------------------------------------------------------------


def grant_access(actor: Actor, owner_code: str, grantee_code: str, permission: str, reason: str,
                 expires_at: dt.datetime | None = None) -> AccessGrant:
    owner = get_organization(owner_code, "owner")
    grantee = get_organization(grantee_code, "grantee")
    authz.require(actor, Perm.GRANT_MANAGE, owner)
    if permission not in GRANTABLE:
        raise ValidationFailed.of("permission", _("Only read permissions can be granted: %(p)s.") % {"p": ", ".join(sorted(GRANTABLE))})
    if owner.pk == grantee.pk:
        raise ValidationFailed.of("grantee", _("An organization already sees its own objects."))
    if not (reason or "").strip():
        raise ValidationFailed.of("reason", _("State why access is granted."))
    if expires_at is not None and timezone.is_naive(expires_at):
        expires_at = timezone.make_aware(expires_at)  # a time without offset is the city's local time
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed.of("expires_at", _("The expiry must be in the future."))
    with transaction.atomic():
        if AccessGrant.objects.filter(owner=owner, grantee=grantee, permission=permission, revoked_at__isnull=True).exists():
            raise Conflict(_("This grant already exists."), [FieldError("permission", _("Already granted."))])
        grant = AccessGrant.objects.create(owner=owner, grantee=grantee, permission=permission, reason=reason.strip(),
                                           expires_at=expires_at, granted_by=actor.name)
        audit.record(actor, "grant.create", grant, summary={"owner": owner.code, "grantee": grantee.code,
                                                            "permission": permission, "expires_at": expires_at})
    return grant


def revoke_access(actor: Actor, grant_id) -> AccessGrant:
    with transaction.atomic():
        grant = AccessGrant.objects.select_related("owner").filter(pk=grant_id, revoked_at__isnull=True).first()
        if grant is None or not authz.allowed(actor, Perm.GRANT_MANAGE, grant.owner):
            raise NotFound(_("No such active grant."))
        grant.revoked_at = timezone.now()
        grant.save(update_fields=["revoked_at", "updated_at"])
        audit.record(actor, "grant.revoke", grant, summary={"owner": grant.owner.code, "permission": grant.permission})
    return grant


def list_access_grants(actor: Actor) -> QuerySet:
    qs = AccessGrant.objects.select_related("owner", "grantee").filter(revoked_at__isnull=True)
    ids = authz.org_ids(actor, Perm.GRANT_MANAGE)
    if ids is None:
        return qs
    own = actor.organization
    return qs.filter(Q(owner_id__in=ids) | Q(grantee=own))


# --------------------------------------------------------------------------------------------------
# Sign-in: passwords, lockout, TOTP
# --------------------------------------------------------------------------------------------------


@dataclass
class SignIn:
    user: User
    next_step: str  # "done", "totp" (enter a code) or "enrol" (must set up two-factor first)


def _failed(user: User | None, username: str, ip: str, reason: str, count: bool = True) -> None:
    """Records a failed sign-in and, when `count`, counts it and locks the account at the threshold. Commits
    on its own: a rejected sign-in must leave its trace even though the caller then raises. Attempts on an
    already locked account are recorded but not counted, so they cannot extend the lock forever."""
    with transaction.atomic():
        summary = {"username": username[:40], "reason": reason}
        if user is not None and count:
            user = User.objects.select_for_update().get(pk=user.pk)
            user.failed_logins += 1
            if user.failed_logins >= settings.LOCKOUT_THRESHOLD:
                user.locked_until = timezone.now() + dt.timedelta(minutes=settings.LOCKOUT_MINUTES)
                user.failed_logins = 0
                summary["locked_until"] = user.locked_until.isoformat()
            user.save(update_fields=["failed_logins", "locked_until"])
        actor = Actor(user=user, ip=ip) if user is not None else Actor(ip=ip)
        audit.record(actor, "auth.login_failed", user, summary=summary)
        if "locked_until" in summary:
            audit.record(actor, "user.locked", user, summary={"username": user.username, "until": summary["locked_until"]})


def _locked_error(user: User) -> Forbidden:
    local = timezone.localtime(user.locked_until)
    return Forbidden(
        _("This account is locked after repeated failed sign-ins until %(t)s. The security administrator can unlock it.")
        % {"t": local.strftime("%Y-%m-%d %H:%M")}
    )


def sign_in_password(username: str, password: str, ip: str) -> SignIn:
    """First factor. Failures never say whether the account exists."""
    username = (username or "").strip()
    user = User.objects.select_related("organization").filter(username=username).first()
    if user is not None and user.is_locked():
        _failed(user, username, ip, "locked", count=False)
        raise _locked_error(User.objects.get(pk=user.pk))
    if user is None or not user.is_active or not user.check_password(password or ""):
        _failed(user, username, ip, "bad_password" if user is not None and user.is_active else "unknown_or_inactive")
        user = User.objects.filter(pk=user.pk).first() if user is not None else None
        if user is not None and user.is_locked():
            raise _locked_error(user)
        raise AuthenticationFailed(_("Wrong username or password."), [FieldError("password", _("Wrong username or password."))])
    if user.two_factor_enrolled:
        return SignIn(user, "totp")
    if user.two_factor_required:
        return SignIn(user, "enrol")
    return SignIn(user, "done")


def _totp_step(user: User, code: str) -> int | None:
    """The RFC 6238 time step `code` belongs to (±1 step of clock drift), or None."""
    code = (code or "").strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6) or not user.totp_secret:
        return None
    totp = pyotp.TOTP(user.totp_secret)
    now = timezone.now().timestamp()
    for drift in (0, -1, 1):
        at = now + drift * totp.interval
        if secrets.compare_digest(totp.at(at), code):
            return int(at // totp.interval)
    return None


def sign_in_totp(user_id, code: str, ip: str) -> User:
    """Second factor for a user who passed the first. A code is accepted once (no replay)."""
    with transaction.atomic():
        user = User.objects.select_for_update().select_related("organization").get(pk=user_id)
        if user.is_locked():
            raise _locked_error(user)
        step = _totp_step(user, code)
        if step is None or (user.totp_last_step is not None and step <= user.totp_last_step):
            ok = False
        else:
            ok = True
            user.totp_last_step = step
            user.failed_logins = 0
            user.save(update_fields=["totp_last_step", "failed_logins"])
    if not ok:
        _failed(user, user.username, ip, "bad_totp")
        user.refresh_from_db()
        if user.is_locked():
            raise _locked_error(user)
        raise ValidationFailed.of("code", _("That code is not valid. Enter the current 6-digit code from your app."))
    return user


def record_sign_in(user: User, ip: str, method: str) -> None:
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(last_login=timezone.now(), failed_logins=0)
        audit.record(Actor(user=user, ip=ip), "auth.login", user, summary={"method": method})


def record_sign_out(user: User, ip: str) -> None:
    with transaction.atomic():
        audit.record(Actor(user=user, ip=ip), "auth.logout", user)


@dataclass
class Enrolment:
    secret: str
    uri: str
    qr_svg: str = field(repr=False)


def start_two_factor(user: User, ip: str) -> Enrolment:
    """Creates a fresh secret (not yet active) and returns what the authenticator app needs."""
    if user.two_factor_enrolled:
        raise Conflict(_("Two-factor authentication is already set up."))
    with transaction.atomic():
        user.totp_secret = pyotp.random_base32(32)
        user.save(update_fields=["totp_secret"])
        audit.record(Actor(user=user, ip=ip), "user.2fa_enrol_start", user)
    return two_factor_enrolment(user)


def two_factor_enrolment(user: User) -> Enrolment:
    uri = pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.username, issuer_name=settings.TOTP_ISSUER)
    svg = segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff")
    return Enrolment(user.totp_secret, uri, svg)


def confirm_two_factor(user_id, code: str, ip: str) -> User:
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user_id)
        if user.two_factor_enrolled:
            raise Conflict(_("Two-factor authentication is already set up."))
        step = _totp_step(user, code)
        if step is None:
            raise ValidationFailed.of("code", _("That code is not valid. Enter the current 6-digit code from your app."))
        user.totp_confirmed_at = timezone.now()
        user.totp_last_step = step
        user.save(update_fields=["totp_confirmed_at", "totp_last_step"])
        audit.record(Actor(user=user, ip=ip), "user.2fa_enrol", user)
    return user


# --------------------------------------------------------------------------------------------------
# Application systems and API keys
# --------------------------------------------------------------------------------------------------

KEY_PREFIX = "sz_"


def list_systems(actor: Actor, org_code: str = "") -> QuerySet:
    qs = authz.scope(actor, Perm.SYSTEM_VIEW, ApplicationSystem.objects.select_related("organization"))
    if org_code:
        qs = qs.filter(organization__code=org_code)
    return qs


def get_system(actor: Actor, code: str) -> ApplicationSystem:
    system = list_systems(actor).filter(code=code).first()
    if system is None and actor.system is not None and actor.system.code == code:
        system = actor.system  # a system always sees itself
    if system is None:
        raise NotFound(_("No application system %(code)s.") % {"code": code})
    return system


def find_system(actor: Actor, code_or_name: str) -> ApplicationSystem:
    """The CLI names a system by its code or its exact name."""
    systems = list_systems(actor)
    found = list(systems.filter(Q(code=code_or_name) | Q(name=code_or_name))[:2])
    if len(found) != 1:
        raise NotFound(
            _("No application system %(s)s.") % {"s": code_or_name}
            if not found
            else _("Several systems are named %(s)s; use the code.") % {"s": code_or_name}
        )
    return found[0]


def create_system(actor: Actor, data: dict) -> ApplicationSystem:
    _require_fields(data, ["code", "name", "organization"])
    org = get_organization(data["organization"])
    authz.require(actor, Perm.SYSTEM_MANAGE, org)
    system = ApplicationSystem(
        code=data["code"].strip(),
        name=data["name"].strip(),
        organization=org,
        description=(data.get("description") or "").strip(),
        contact=actor.user,
    )
    _clean(system, exclude=["contact"])
    with transaction.atomic():
        system.save()
        audit.record(actor, "system.create", system, summary={"code": system.code, "name": system.name,
                                                              "organization": org.code})
    return system


def update_system(actor: Actor, code: str, data: dict) -> ApplicationSystem:
    with transaction.atomic():
        system = get_system(actor, code)
        authz.require(actor, Perm.SYSTEM_MANAGE, system.organization)
        changes = {}
        for name in ("name", "description", "is_active"):
            value = data.get(name)
            if value is not None and getattr(system, name) != value:
                changes[name] = [getattr(system, name), value]
                setattr(system, name, value)
        _clean(system, exclude=["contact"])
        if changes:
            system.save()
            audit.record(actor, "system.update", system, summary={"code": code, "changes": changes})
    return system


def list_keys(actor: Actor, system_code: str) -> QuerySet:
    return get_system(actor, system_code).keys.all()


def create_api_key(actor: Actor, system_code: str, label: str = "", days: int = 90) -> tuple[ApiKey, str]:
    """Returns the key record and the key itself; only its SM3 digest is kept."""
    system = get_system(actor, system_code)
    authz.require(actor, Perm.SYSTEM_MANAGE, system.organization)
    if not system.is_active:
        raise ValidationFailed.of("system", _("The application system is deactivated."))
    if not isinstance(days, int) or not 1 <= days <= settings.API_KEY_MAX_DAYS:
        raise ValidationFailed.of("days", _("A key lives 1 to %(n)s days.") % {"n": settings.API_KEY_MAX_DAYS})
    label = (label or "").strip()[:80] or timezone.now().strftime("key-%Y%m%d")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        key = ApiKey.objects.create(system=system, label=label, prefix=raw[:10], digest=sm3_hex(raw.encode()),
                                    expires_at=timezone.now() + dt.timedelta(days=days), created_by=actor.name)
        audit.record(actor, "apikey.create", key, summary={"system": system.code, "label": label, "prefix": key.prefix,
                                                           "expires_at": key.expires_at})
    return key, raw


def revoke_api_key(actor: Actor, key_id) -> ApiKey:
    with transaction.atomic():
        key = ApiKey.objects.select_related("system__organization").filter(pk=key_id).first()
        org = key.system.organization if key is not None else None
        may_revoke = org is not None and (authz.allowed(actor, Perm.APIKEY_REVOKE, org)
                                          or authz.allowed(actor, Perm.SYSTEM_MANAGE, org))
        if not may_revoke:
            if org is None or not authz.allowed(actor, Perm.SYSTEM_VIEW, org):
                raise NotFound(_("No such API key."))
            raise Forbidden(_("You do not have permission to do this."))
        if key.revoked_at is not None:
            raise Conflict(_("This key is already revoked."))
        key.revoked_at = timezone.now()
        key.revoked_by = actor.name
        key.save(update_fields=["revoked_at", "revoked_by", "updated_at"])
        audit.record(actor, "apikey.revoke", key, summary={"system": key.system.code, "prefix": key.prefix})
    return key


def authenticate_api_key(raw: str, ip: str) -> ApplicationSystem:
    """Resolves a presented key to its system or raises 401 saying what is wrong with it."""
    raw = (raw or "").strip()
    key = None
    if raw.startswith(KEY_PREFIX) and len(raw) < 100:
        key = ApiKey.objects.select_related("system__organization").filter(digest=sm3_hex(raw.encode())).first()
    now = timezone.now()
    if key is None:
        problem = _("The API key is not valid.")
    elif key.revoked_at is not None:
        problem = _("The API key was revoked.")
    elif key.expires_at <= now:
        problem = _("The API key has expired.")
    elif not key.system.is_active:
        problem = _("The application system is deactivated.")
    else:
        # Touch at most once a minute: a write on every call would serialize the gateway.
        if key.last_used_at is None or now - key.last_used_at > dt.timedelta(minutes=1) or key.last_used_ip != ip:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now, last_used_ip=ip or None)
        return key.system
    with transaction.atomic():
        audit.record(
            Actor(system=key.system, ip=ip) if key else Actor(ip=ip),
            "auth.apikey_failed",
            key,
            summary={"prefix": raw[:10], "reason": str(problem)},
        )
    raise AuthenticationFailed(problem)
