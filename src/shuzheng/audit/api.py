"""Audit-trail endpoints: audit administrators search, export and verify; nothing can change a record."""

import datetime as dt

from django.http import StreamingHttpResponse
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate

from shuzheng.audit import services
from shuzheng.core.paging import Paging
from shuzheng.org.services import Actor

router = Router(tags=["audit"])


class AuditOut(Schema):
    seq: int
    at: dt.datetime
    actor: str
    actor_org: str
    ip: str
    action: str
    object_type: str
    object_id: str
    summary: str
    hash: str


class VerifyOut(Schema):
    intact: bool
    records: int
    first_bad_seq: int | None
    reason: str
    seconds: float
    signatures: int = Field(description="SM2 signatures of the head checked")
    signed_seq: int | None = Field(description="the newest signed record that checks out")
    signed_at: str | None
    unsigned: int = Field(description="records after the newest signature, covered by the SM3 chain only")
    key_fingerprint: str


class SignatureOut(Schema):
    seq: int = Field(description="the last record the signature covers")
    hash: str = Field(description="the SM3 chain hash at that record")
    signed_at: dt.datetime
    signature: str = Field(description="DER-encoded SM2 signature (hex) of "
                                       "'shuzheng-audit-head|<seq>|<hash>|<signed_at, ISO 8601 UTC, µs>', "
                                       "signer id 1234567812345678")
    key_fingerprint: str


class AuditFilter(Schema):
    actor: str = Field("", max_length=80)
    actor_org: str = Field("", max_length=18)
    action: str = Field("", max_length=64, description="prefix, e.g. 'auth.' or 'user.role_'")
    object_id: str = Field("", max_length=64)
    ip: str = Field("", max_length=45)
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def query(self) -> services.AuditQuery:
        def us(t):
            if t is None:
                return None
            if t.tzinfo is None:
                t = t.replace(tzinfo=dt.timezone.utc)
            return int(t.timestamp() * 1_000_000)

        return services.AuditQuery(self.actor, self.actor_org, self.action, self.object_id, self.ip,
                                   us(self.since), us(self.until))


@router.get("", response=list[AuditOut])
@paginate(Paging)
def search(request, filters: Query[AuditFilter]):
    return services.search(Actor.from_request(request), filters.query())


@router.get("/export.csv", response={200: None})
def export(request, filters: Query[AuditFilter]):
    rows = services.export(Actor.from_request(request), filters.query())
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="audit.csv"'
    return response


@router.get("/signatures", response=list[SignatureOut])
@paginate(Paging)
def signatures(request):
    """The SM2 signatures of the chain head, newest first; `shuzheng audit public-key` exports the key."""
    return services.signatures(Actor.from_request(request))


@router.get("/verify", response=VerifyOut)
def verify(request):
    return services.verify_as(Actor.from_request(request)).as_dict()
