"""Webhook subscriptions: a consumer system asks to be told when a resource it holds a grant for gets a new
snapshot. Who may act on a subscription is decided here, once, for the API, the UI and the CLI:

- the grant's own application system (an API-key call: Actor.system), for its own grants only;
- a user with SYSTEM_MANAGE over the grant's consumer organization (its data officer or developers);
- the operator (CLI).

Users who may see the grant (services.list_grants: the consumer's and the provider's people with
SHARE_VIEW, and overseers) may list its subscriptions and their deliveries but not change them (403);
everyone else is told it does not exist (404), so nothing leaks.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from shuzheng.audit import services as audit
from shuzheng.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shuzheng.org.roles import Perm
from shuzheng.org.services import Actor, authz
from shuzheng.sharing import webhooks
from shuzheng.sharing.models import Delivery, DeliveryState, Grant, Subscription

MAX_ACTIVE_PER_GRANT = 5  # each one multiplies every load's outgoing requests


def _get(model, pk, *related):
    try:
        return model.objects.select_related(*related).filter(pk=pk).first()
    except (ValueError, ValidationError):  # not a UUID
        return None


def _visible_grants(actor: Actor) -> QuerySet:
    from shuzheng.sharing.services import list_grants  # one rule for who sees a grant, kept there

    return list_grants(actor)


def _check(actor: Actor, grant: Grant | None, manage: bool, missing: str) -> Grant:
    """The grant if `actor` may see (manage=False) or change (manage=True) its subscriptions."""
    if grant is not None:
        if actor.system is not None and actor.user is None:
            if grant.system_id == actor.system.pk:
                return grant
        elif authz.allowed(actor, Perm.SYSTEM_MANAGE, grant.consumer):
            return grant
        elif _visible_grants(actor).filter(pk=grant.pk).exists():
            if not manage:
                return grant
            raise Forbidden(_("You do not have permission to do this."))
    raise NotFound(missing)


def check_url(url: str) -> str:
    """An http(s) URL with a host, without credentials; 422 on field "url" otherwise."""
    url = (url or "").strip()
    invalid = ValidationFailed.of("url", _("Give an http:// or https:// URL with a host name."))
    if not url or len(url) > 500 or any(c.isspace() or ord(c) < 32 for c in url):
        raise invalid
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        raise invalid from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise invalid
    if parts.username is not None or parts.password is not None:
        # The URL is shown in lists and the audit trail: a password in it would be shown too.
        raise ValidationFailed.of("url", _("The URL must not contain a user name or password."))
    return url


def _check_export_control(actor: Actor, grant: Grant, url: str) -> None:
    """Domestic-only data (出境 control) goes only to hosts on the allow-list: 422 on "url" otherwise
    (audited as export_control.refused)."""
    from shuzheng.sharing.services import export_refusal_for_host

    reason = export_refusal_for_host(actor, grant, urlsplit(url).hostname or "", "subscription", url)
    if reason:
        raise ValidationFailed.of("url", _("The data of %(code)s may not leave the country (不得出境), and this "
                                           "address is not on the domestic allow-list: %(reason)s")
                                  % {"code": grant.resource.code, "reason": reason})


def create_subscription(actor: Actor, grant_id, url: str) -> tuple[Subscription, str]:
    """Subscribes `url` to the grant's resource. Returns the subscription and its signing secret, which is
    shown this once (the consumer keeps it to verify signatures)."""
    grant = _check(actor, _get(Grant, grant_id, "consumer", "system", "resource__published"), True,
                   _("No such grant."))
    url = check_url(url)
    _check_export_control(actor, grant, url)
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        grant = Grant.objects.select_for_update().get(pk=grant.pk)  # serializes the per-grant checks below
        if grant.status() != "live":
            raise Conflict(_("This grant is revoked or has expired."))
        active = Subscription.objects.filter(grant=grant, active=True)
        if active.filter(url=url).exists():
            raise Conflict(_("This URL is already subscribed to the grant."))
        if active.count() >= MAX_ACTIVE_PER_GRANT:
            raise Conflict(_("A grant has at most %(n)s active subscriptions.") % {"n": MAX_ACTIVE_PER_GRANT})
        sub = Subscription.objects.create(grant=grant, url=url, secret=secret, created_by=actor.name)
        audit.record(actor, "sharing.subscription_create", sub, summary={
            "grant": str(grant.pk), "system": grant.system.code, "resource": grant.resource.code, "url": url})
    return sub, secret


def get_subscription(actor: Actor, subscription_id, manage: bool = False) -> Subscription:
    sub = _get(Subscription, subscription_id, "grant__consumer", "grant__system", "grant__resource")
    _check(actor, sub.grant if sub else None, manage, _("No such subscription."))
    return sub


def deactivate_subscription(actor: Actor, subscription_id) -> Subscription:
    """Stops the subscription; deliveries still waiting for a try are failed with that reason."""
    sub = get_subscription(actor, subscription_id, manage=True)
    with transaction.atomic():
        sub = Subscription.objects.select_for_update().select_related("grant__system", "grant__resource").get(pk=sub.pk)
        if not sub.active:
            raise Conflict(_("This subscription is already deactivated."))
        sub.active = False
        sub.save(update_fields=["active", "updated_at"])
        dropped = Delivery.objects.filter(subscription=sub, state=DeliveryState.PENDING).update(
            state=DeliveryState.FAILED, next_attempt_at=None, last_error="subscription deactivated")
        audit.record(actor, "sharing.subscription_deactivate", sub, summary={
            "grant": str(sub.grant_id), "system": sub.grant.system.code, "resource": sub.grant.resource.code,
            "url": sub.url, "pending_dropped": dropped})
    return sub


def list_subscriptions(actor: Actor) -> QuerySet:
    """The subscriptions `actor` may see: a system its own, a user those of the grants they may see or whose
    consumer's systems they manage."""
    qs = Subscription.objects.select_related("grant__system", "grant__resource", "grant__consumer")
    if actor.system is not None and actor.user is None:
        return qs.filter(grant__system=actor.system)
    managed = authz.scope(actor, Perm.SYSTEM_MANAGE, Grant.objects.all(), org_field="consumer")
    return qs.filter(Q(grant__in=_visible_grants(actor).values("pk")) | Q(grant__in=managed.values("pk")))


def list_deliveries(actor: Actor, subscription_id) -> QuerySet:
    """The delivery log of one subscription, newest first: state, tries, last status and error."""
    sub = get_subscription(actor, subscription_id)
    return Delivery.objects.filter(subscription=sub).order_by("-created_at")


def redeliver(actor: Actor, delivery_id) -> Delivery:
    """Sends a delivery again from the start (a failed one, or a delivered one the consumer lost): tries
    reset to 0, due now. The previous outcome stays in the audit record."""
    delivery = _get(Delivery, delivery_id, "subscription__grant__consumer", "subscription__grant__system")
    _check(actor, delivery.subscription.grant if delivery else None, True, _("No such delivery."))
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
        sub = Subscription.objects.select_related("grant__resource").get(pk=delivery.subscription_id)
        if not sub.active:
            raise Conflict(_("The subscription is deactivated."))
        if sub.grant.status() != "live":
            raise Conflict(_("This grant is revoked or has expired."))
        before = {"state": delivery.state, "attempts": delivery.attempts, "status": delivery.last_status,
                  "error": delivery.last_error[:200]}
        delivery.state, delivery.attempts, delivery.next_attempt_at = DeliveryState.PENDING, 0, timezone.now()
        delivery.delivered_at = None
        delivery.save(update_fields=["state", "attempts", "next_attempt_at", "delivered_at"])
        audit.record(actor, "sharing.webhook_redeliver", delivery, summary={
            "subscription": str(sub.pk), "event": delivery.event_id, "resource": sub.grant.resource.code,
            "before": before})
        transaction.on_commit(lambda: webhooks.schedule([str(delivery.pk)]))
    return delivery
