"""Quality rules (数据治理) and correction tickets (数据纠错). A rule attached to a data element applies to
every item that carries the element, in every resource; a rule attached to a resource applies there only."""

from django.db import models
from django.utils.translation import gettext_lazy as _

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
