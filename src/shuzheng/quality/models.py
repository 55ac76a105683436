"""Quality rules (数据治理) and correction tickets (数据纠错). A rule attached to a data element applies to
every item that carries the element, in every resource; a rule attached to a resource applies there only."""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from shuzheng.catalog.models import DataElement, Resource
from shuzheng.core.models import BaseModel


class RuleKind(models.TextChoices):
    NOT_NULL = "not_null", _("Not empty")
    UNIQUE = "unique", _("Unique")
    PATTERN = "pattern", _("Pattern")
    RANGE = "range", _("Range")
    CODE_TABLE = "code_table", _("Value from a code table")
    ID_NUMBER = "id_number", _("Citizen ID number (GB 11643)")
    CREDIT_CODE = "credit_code", _("Unified social credit code (GB 32100)")
    MOBILE = "mobile", _("Mobile number")
    DATE_PAST = "date_past", _("Valid date, not in the future")
    ID_CONSISTENCY = "id_consistency", _("Birth date and sex agree with the ID number")
    REFERENCE = "reference", _("Value exists in another resource")
    CROSS_SOURCE = "cross_source", _("Agrees with the authoritative source")


class Rule(BaseModel):
    element = models.ForeignKey(DataElement, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="quality_rules")
    resource = models.ForeignKey(Resource, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="quality_rules")
    kind = models.CharField(_("kind"), max_length=16, choices=RuleKind.choices)
    # Resource rules name the items they read; element rules apply to each item carrying the element, and
    # params name other elements where a rule reads more than one column (id_consistency).
    items = models.JSONField(_("data items"), default=list, blank=True)
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    blocking = models.BooleanField(_("blocking"), default=True)
    active = models.BooleanField(_("active"), default=True)
    version = models.PositiveIntegerField(default=1)
    description = models.CharField(_("description"), max_length=200, blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(element__isnull=False, resource__isnull=True)
                | models.Q(element__isnull=True, resource__isnull=False),
                name="quality_rule_one_target",
            )
        ]


# --------------------------------------------------------------------------------------------------
# Correction tickets (数据纠错): the rules are in quality/tickets.py
# --------------------------------------------------------------------------------------------------


class TicketState(models.TextChoices):
    OPEN = "open", pgettext_lazy("ticket state", "Open")
    ACCEPTED = "accepted", pgettext_lazy("ticket state", "Accepted")
    RESOLVED = "resolved", pgettext_lazy("ticket state", "Resolved")
    REJECTED = "rejected", pgettext_lazy("ticket state", "Rejected")


# States in which the provider still owes an answer: only these can be overdue.
TICKET_ACTIVE = (TicketState.OPEN, TicketState.ACCEPTED)


class TicketCounter(models.Model):
    """The last ticket number given out on one day (Asia/Shanghai). Raising a ticket locks its day's row,
    so two tickets raised at once never get the same number."""

    day = models.DateField(primary_key=True)
    last = models.PositiveIntegerField(default=0)


class CorrectionTicket(BaseModel):
    """A consumer says one field of one record of a resource is wrong; the providing department answers."""

    number = models.CharField(_("ticket number"), max_length=20, unique=True)
    resource = models.ForeignKey(Resource, on_delete=models.PROTECT, related_name="tickets",
                                 verbose_name=_("resource"))
    # Copied when raised: the department that owed the answer stays on the ticket if the resource moves.
    provider = models.ForeignKey("org.Organization", on_delete=models.PROTECT, related_name="tickets",
                                 verbose_name=_("provider"))
    record_key = models.JSONField(_("record"), default=dict)
    item = models.CharField(_("data item"), max_length=100)
    current_value = models.TextField(_("current value"), blank=True)
    proposed_value = models.TextField(_("proposed value"), blank=True)
    description = models.TextField(_("description"))
    raised_by = models.CharField(_("raised by"), max_length=80)
    raised_by_org = models.ForeignKey("org.Organization", on_delete=models.PROTECT, related_name="tickets_raised",
                                      verbose_name=_("raised by organization"))
    assignee = models.ForeignKey("org.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets",
                                 verbose_name=_("assignee"))
    state = models.CharField(_("state"), max_length=10, choices=TicketState.choices, default=TicketState.OPEN)
    due_at = models.DateTimeField(_("due"))
    resolution = models.TextField(_("resolution"), blank=True)
    resolved_at = models.DateTimeField(_("closed at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["provider", "state"]),
            models.Index(fields=["state", "due_at"]),
            models.Index(fields=["raised_by", "created_at"]),
        ]

    def __str__(self):
        return self.number

    @property
    def is_overdue(self) -> bool:
        return self.state in TICKET_ACTIVE and self.due_at < timezone.now()


class TicketComment(models.Model):
    """One entry of a ticket's history: a comment, or a step (raise, accept, resolve, reject, reopen) with
    the text that went with it and the state it left the ticket in."""

    class Action(models.TextChoices):
        RAISE = "raise", pgettext_lazy("ticket event", "Raised")
        COMMENT = "comment", pgettext_lazy("ticket event", "Commented")
        ACCEPT = "accept", pgettext_lazy("ticket event", "Accepted")
        RESOLVE = "resolve", pgettext_lazy("ticket event", "Resolved")
        REJECT = "reject", pgettext_lazy("ticket event", "Rejected")
        REOPEN = "reopen", pgettext_lazy("ticket event", "Reopened")

    ticket = models.ForeignKey(CorrectionTicket, on_delete=models.CASCADE, related_name="comments")
    action = models.CharField(_("action"), max_length=10, choices=Action.choices, default=Action.COMMENT)
    author = models.CharField(_("author"), max_length=80)
    author_org = models.ForeignKey("org.Organization", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    body = models.TextField(_("comment"), blank=True)
    # The state change this entry recorded (both blank for a plain comment).
    from_state = models.CharField(max_length=10, choices=TicketState.choices, blank=True)
    to_state = models.CharField(max_length=10, choices=TicketState.choices, blank=True)
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        ordering = ["ticket", "at", "id"]
