"""Organization, user, role, application-system and API-key endpoints. Each one parses, calls
org.services and serialises; no rule lives here."""

from __future__ import annotations

import datetime as dt
import uuid

from ninja import Field, Router, Schema, Status
from ninja.pagination import paginate

from shuzheng.core.paging import Paging
from shuzheng.org import services
from shuzheng.org.models import Organization
from shuzheng.org.roles import Perm, Role
from shuzheng.org.services import Actor

router = Router(tags=["organizations and identity"])

# ---- schemas ----


class RegionOut(Schema):
    code: str
    name: str
    level: str
    parent: str | None = Field(None, alias="parent.code")


class OrgRef(Schema):
    code: str
    name: str


class OrganizationOut(Schema):
    code: str
    name: str
    short_name: str
    name_en: str
    kind: str
    parent: OrgRef | None
    region: RegionOut
    is_active: bool


class OrganizationIn(Schema):
    code: str = Field(..., min_length=18, max_length=18, description="GB 32100 unified social credit code")
    name: str = Field(..., min_length=2, max_length=100)
    short_name: str = Field("", max_length=50)
    name_en: str = Field("", max_length=150)
    kind: Organization.Kind
    parent: str | None = Field(None, description="credit code of the parent organization")
    region: str = Field(..., description="GB/T 2260 region code")


class OrganizationPatch(Schema):
    name: str | None = Field(None, min_length=2, max_length=100)
    short_name: str | None = Field(None, max_length=50)
    name_en: str | None = Field(None, max_length=150)
    kind: Organization.Kind | None = None
    parent: str | None = None
    region: str | None = None
    is_active: bool | None = None


class UserOut(Schema):
    username: str
    full_name: str
    email: str
    mobile: str
    organization: OrgRef
    roles: list[str]
    is_active: bool
    locked: bool
    two_factor: bool

    @staticmethod
    def resolve_roles(obj):
        return sorted(r.role for r in obj.roles.all())

    @staticmethod
    def resolve_locked(obj):
        return obj.is_locked()

    @staticmethod
    def resolve_two_factor(obj):
        return obj.two_factor_enrolled


class UserIn(Schema):
    username: str = Field(..., max_length=40)
    full_name: str = Field(..., min_length=1, max_length=60)
    organization: str = Field(..., description="credit code of the user's organization")
    password: str = Field(..., max_length=200)
    email: str = Field("", max_length=254)
    mobile: str = Field("", max_length=11)


class UserPatch(Schema):
    full_name: str | None = Field(None, min_length=1, max_length=60)
    email: str | None = Field(None, max_length=254)
    mobile: str | None = Field(None, max_length=11)
    organization: str | None = None
    is_active: bool | None = None


class PasswordIn(Schema):
    new_password: str = Field(..., max_length=200)
    old_password: str | None = Field(None, max_length=200, description="required when changing your own")


class RoleIn(Schema):
    role: Role


class SystemOut(Schema):
    code: str
    name: str
    description: str
    organization: OrgRef
    is_active: bool


class SystemIn(Schema):
    code: str = Field(..., max_length=48)
    name: str = Field(..., min_length=1, max_length=100)
    organization: str
    description: str = Field("", max_length=2000)


class SystemPatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=2000)
    is_active: bool | None = None


class KeyOut(Schema):
    id: uuid.UUID
    label: str
    prefix: str
    status: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    last_used_ip: str | None

    @staticmethod
    def resolve_status(obj):
        return obj.status()


class KeyIn(Schema):
    label: str = Field("", max_length=80)
    days: int = Field(90, ge=1, description="lifetime in days")


class KeyCreated(KeyOut):
    key: str = Field(..., description="shown once; only its SM3 digest is stored")


class GrantOut(Schema):
    id: uuid.UUID
    owner: OrgRef
    grantee: OrgRef
    permission: str
    reason: str
    expires_at: dt.datetime | None
    granted_by: str


class GrantIn(Schema):
    owner: str
    grantee: str
    permission: Perm
    reason: str = Field(..., max_length=200)
    expires_at: dt.datetime | None = None


class MeOut(Schema):
    kind: str
    username: str | None = None
    full_name: str | None = None
    system: str | None = None
    organization: OrgRef
    roles: list[str] = []
    two_factor: bool | None = None


# ---- endpoints ----


@router.get("/me", response=MeOut, summary="The calling user or application system")
def me(request):
    actor = Actor.from_request(request)
    if actor.system is not None:
        return {"kind": "system", "system": actor.system.code, "organization": actor.system.organization}
    user = actor.user
    return {"kind": "user", "username": user.username, "full_name": user.full_name, "organization": user.organization,
            "roles": sorted(user.role_set), "two_factor": user.two_factor_enrolled}


@router.get("/regions", response=list[RegionOut])
@paginate(Paging)
def list_regions(request, parent: str = "", level: str = ""):
    return services.list_regions(parent=parent, level=level)


@router.get("/organizations", response=list[OrganizationOut])
@paginate(Paging)
def list_organizations(request, q: str = "", kind: str = ""):
    return services.list_organizations(q=q, kind=kind)


@router.get("/organizations/{code}", response=OrganizationOut)
def get_organization(request, code: str):
    return services.find_organization(code)


@router.post("/organizations", response={201: OrganizationOut})
def create_organization(request, body: OrganizationIn):
    return Status(201, services.create_organization(Actor.from_request(request), body.dict()))


@router.patch("/organizations/{code}", response=OrganizationOut)
def update_organization(request, code: str, body: OrganizationPatch):
    return services.update_organization(Actor.from_request(request), code, body.dict(exclude_unset=True))


@router.get("/users", response=list[UserOut])
@paginate(Paging)
def list_users(request, organization: str = "", q: str = "", role: str = ""):
    return services.list_users(Actor.from_request(request), org_code=organization, q=q, role=role)


@router.get("/users/{username}", response=UserOut)
def get_user(request, username: str):
    return services.get_user(Actor.from_request(request), username)


@router.post("/users", response={201: UserOut})
def create_user(request, body: UserIn):
    return Status(201, services.create_user(Actor.from_request(request), body.dict()))


@router.patch("/users/{username}", response=UserOut)
def update_user(request, username: str, body: UserPatch):
    return services.update_user(Actor.from_request(request), username, body.dict(exclude_unset=True))


@router.post("/users/{username}/password", response={204: None})
def set_password(request, username: str, body: PasswordIn):
    services.set_password(Actor.from_request(request), username, body.new_password, body.old_password)
    return Status(204, None)


@router.post("/users/{username}/roles", response={201: UserOut})
def assign_role(request, username: str, body: RoleIn):
    actor = Actor.from_request(request)
    services.assign_role(actor, username, body.role)
    return Status(201, services.get_user(actor, username))


@router.delete("/users/{username}/roles/{role}", response={204: None})
def remove_role(request, username: str, role: str):
    services.remove_role(Actor.from_request(request), username, role)
    return Status(204, None)


@router.post("/users/{username}/unlock", response=UserOut)
def unlock_user(request, username: str):
    return services.unlock_user(Actor.from_request(request), username)


@router.post("/users/{username}/two-factor/reset", response=UserOut)
def reset_two_factor(request, username: str):
    return services.reset_two_factor(Actor.from_request(request), username)


@router.get("/systems", response=list[SystemOut])
@paginate(Paging)
def list_systems(request, organization: str = ""):
    return services.list_systems(Actor.from_request(request), org_code=organization)


@router.get("/systems/{code}", response=SystemOut)
def get_system(request, code: str):
    return services.get_system(Actor.from_request(request), code)


@router.post("/systems", response={201: SystemOut})
def create_system(request, body: SystemIn):
    return Status(201, services.create_system(Actor.from_request(request), body.dict()))


@router.patch("/systems/{code}", response=SystemOut)
def update_system(request, code: str, body: SystemPatch):
    return services.update_system(Actor.from_request(request), code, body.dict(exclude_unset=True))


@router.get("/systems/{code}/keys", response=list[KeyOut])
def list_keys(request, code: str):
    return list(services.list_keys(Actor.from_request(request), code))


@router.post("/systems/{code}/keys", response={201: KeyCreated})
def create_key(request, code: str, body: KeyIn):
    key, raw = services.create_api_key(Actor.from_request(request), code, body.label, body.days)
    key.key = raw
    return Status(201, key)


@router.post("/keys/{key_id}/revoke", response=KeyOut)
def revoke_key(request, key_id: uuid.UUID):
    return services.revoke_api_key(Actor.from_request(request), key_id)


@router.get("/grants", response=list[GrantOut])
def list_grants(request):
    return list(services.list_access_grants(Actor.from_request(request)))


@router.post("/grants", response={201: GrantOut})
def create_grant(request, body: GrantIn):
    return Status(201, services.grant_access(Actor.from_request(request), body.owner, body.grantee, body.permission,
                                      body.reason, body.expires_at))


@router.post("/grants/{grant_id}/revoke", response=GrantOut)
def revoke_grant(request, grant_id: uuid.UUID):
    return services.revoke_access(Actor.from_request(request), grant_id)
