"""Service errors. Services raise these; the API renders them as RFC 9457 problem+json and the UI
shows each field message next to its field. Anything else escaping a service is a bug (a 500)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"field": self.field, "message": str(self.message)}


@dataclass
class ServiceError(Exception):
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    status = 400
    title = "Bad request"
    type = "about:blank"

    def __post_init__(self):
        super().__init__(self.detail)

    def problem(self, instance: str | None = None) -> dict:
        body = {"type": self.type, "title": self.title, "status": self.status, "detail": str(self.detail)}
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [e.as_dict() for e in self.errors]
        return body


class ValidationFailed(ServiceError):
    status = 422
    title = "Validation failed"

    @classmethod
    def of(cls, field_name: str, message: str) -> "ValidationFailed":
        return cls(str(message), [FieldError(field_name, message)])

    @classmethod
    def listing(cls, errors: list[FieldError]) -> "ValidationFailed":
        """One error per field at fault; the detail names the first and how many there are."""
        from django.utils.translation import gettext as _

        first = str(errors[0].message)
        return cls(first if len(errors) == 1 else _("%(n)s problems: %(first)s") % {"n": len(errors), "first": first},
                   errors)


class AuthenticationFailed(ServiceError):
    status = 401
    title = "Authentication required"


class Forbidden(ServiceError):
    status = 403
    title = "Forbidden"


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class TooManyRequests(ServiceError):
    status = 429
    title = "Too many requests"


class Unavailable(ServiceError):
    """The platform cannot answer now for a reason on its side that the caller cannot fix (stored data that
    fails its integrity check); the refusal is audited like any other."""

    status = 503
    title = "Service unavailable"
