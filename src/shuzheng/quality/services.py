"""Quality rules and reports. Who may change a rule: a resource's rules belong to its provider (data
officer, data steward); an element's rules are data standards and belong to the catalog reviewers. Every
change bumps the rule's version, which each load records in its lineage."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from shuzheng.audit.services import record
from shuzheng.catalog import services as catalog
from shuzheng.catalog.models import CodeTable, DataElement, MountKind, Resource
from shuzheng.core.errors import FieldError, NotFound, ValidationFailed
from shuzheng.ingest.pipeline import Plan
from shuzheng.org.roles import Perm
from shuzheng.org.services import Actor, authz
from shuzheng.quality.checks import Check, validate_params
from shuzheng.quality.models import Rule, RuleKind
from shuzheng.security import fieldcrypt
from shuzheng.warehouse import lake

SEX = {"male": "1", "female": "2"}  # GB/T 2261.1


def rule_dict(rule: Rule) -> dict:
    return {"id": str(rule.id), "kind": rule.kind, "items": rule.items, "params": rule.params,
            "blocking": rule.blocking, "active": rule.active, "version": rule.version,
            "element": rule.element.identifier if rule.element_id else None,
            "resource": rule.resource.code if rule.resource_id else None, "description": rule.description}


def list_rules(actor: Actor, code: str) -> list[Rule]:
    """Every rule a load of resource `code` applies: the resource's own and those of its items' elements."""
    resource = catalog.get_resource(actor, code)
    version = resource.published or resource.pending
    elements = {i.element_id for i in version.items.all() if i.element_id} if version else set()
    own = list(Rule.objects.filter(resource=resource).select_related("resource", "element"))
    inherited = list(Rule.objects.filter(element_id__in=elements).select_related("resource", "element"))
    return own + inherited


def _validate(kind: str, items: list, params: dict, valid_items: set | None) -> None:
    """`valid_items` None means an element rule: it reads the element's item, named here "value"."""
    errors = []
    if kind not in RuleKind.values:
        raise ValidationFailed.of("kind", _("Unknown rule kind %(kind)s.") % {"kind": kind})
    if kind == RuleKind.CODE_TABLE:
        table = params.get("code_table")
        if not table or not CodeTable.objects.filter(code=table).exists():
            errors.append(FieldError("params.code_table", _("No code table %(code)s.") % {"code": table}))
    if kind in (RuleKind.REFERENCE, RuleKind.CROSS_SOURCE):
        ref = Resource.objects.filter(code=catalog.normalize_code(params.get("resource") or "")).first()
        if ref is None or ref.mount_kind != MountKind.TABLE:
            errors.append(FieldError("params.resource", _("Name a resource mounted as a warehouse table.")))
    if valid_items is None:
        checked_items, checked = ["value"], dict(params)
        if kind == RuleKind.ID_CONSISTENCY:
            named = {k: params.get(k) for k in ("birth_element", "sex_element") if params.get(k)}
            errors += [FieldError(f"params.{k}", _("No data element %(e)s.") % {"e": v}) for k, v in named.items()
                       if not DataElement.objects.filter(identifier=v).exists()]
            if not named:
                errors.append(FieldError("params.birth_element", _("Name the birth-date or sex element.")))
            checked = {"id": "value", "birth": "birth" if "birth_element" in named else None,
                       "sex": "sex" if "sex_element" in named else None}
    else:
        checked_items, checked = items, dict(params)
        if not items:
            errors.append(FieldError("items", _("Name the data items this rule checks.")))
        errors += [FieldError("items", _("No data item %(item)s in this resource.") % {"item": i})
                   for i in items if i not in valid_items]
    if kind == RuleKind.CODE_TABLE:
        checked = {k: v for k, v in checked.items() if k != "code_table"} | {"values": ["0"]}
    errors += [FieldError(f, m) for f, m in validate_params(kind, checked_items, checked)
               if not any(e.field == f for e in errors)]
    if errors:
        raise ValidationFailed(_("The rule is not valid."), errors)


def _params_for_check(kind: str, params: dict) -> dict:
    """The checks compiler takes resolved parameters: a code table's values instead of its code."""
    if kind == RuleKind.CODE_TABLE:
        values = list(CodeTable.objects.get(code=params["code_table"]).values.values_list("code", flat=True))
        return {"values": values}
    return params


def save_rule(actor: Actor, *, code: str = "", element: str = "", kind: str, items=None, params=None,
              blocking: bool = True, description: str = "", rule_id=None, active: bool = True) -> Rule:
    items, params = list(items or []), dict(params or {})
    with transaction.atomic():
        if rule_id:
            rule = Rule.objects.select_for_update(of=("self",)).filter(id=rule_id).select_related("resource", "element").first()
            if rule is None:
                raise NotFound(_("No such rule."))
            resource, target_element = rule.resource, rule.element
        else:
            rule = Rule()
            resource = catalog.get_resource(actor, code) if code else None
            target_element = None
            if not resource:
                target_element = DataElement.objects.filter(identifier=element).first()
                if target_element is None:
                    raise ValidationFailed.of("element", _("Name a resource or a data element."))
        if resource is not None:
            catalog.get_resource(actor, resource.code)  # visibility
            authz.require(actor, Perm.QUALITY_MANAGE, resource.provider)
            version = resource.published or resource.pending
            valid = {i.name for i in version.items.all()}
            _validate(kind, items, params, valid)
        else:
            authz.require(actor, Perm.STANDARD_MANAGE)
            _validate(kind, items, params, None)
            items = []
        before = rule_dict(rule) if rule_id else None
        rule.resource, rule.element = resource, target_element
        rule.kind, rule.items, rule.params = kind, items, params
        rule.blocking, rule.description, rule.active = bool(blocking), description[:200], bool(active)
        if before:
            rule.version += 1
        rule.save()
        record(actor, "quality.rule_update" if before else "quality.rule_create", rule,
               summary={"before": before, "after": rule_dict(rule)})
    return rule


def _element_check(rule: Rule, item, by_element: dict) -> Check | None:
    params = _params_for_check(rule.kind, rule.params)
    if rule.kind == RuleKind.ID_CONSISTENCY:
        birth = by_element.get(params.get("birth_element"))
        sex = by_element.get(params.get("sex_element"))
        if not birth and not sex:
            return None
        params = {"id": item.name, "birth": birth, "sex": sex, **SEX}
    return Check(str(rule.id), rule.kind, (item.name,), params, rule.blocking)


def plan_for(resource: Resource, items) -> tuple[Plan, list[dict]]:
    """The checks a load of `resource` applies and, for the lineage, the rules (id and version) behind
    them. Mandatory items are not-null and key items unique by construction, whatever the rules say."""
    checks, used = [], []
    keys = tuple(i.name for i in items if i.is_key)
    for item in items:
        if not item.nullable:
            checks.append(Check(f"item:{item.name}:not_null", RuleKind.NOT_NULL, (item.name,), {}, True))
    if keys:
        checks.append(Check("key", RuleKind.UNIQUE, keys, {}, True))
    by_element = {}
    for item in items:
        if item.element_id:
            by_element.setdefault(item.element.identifier, item.name)
    element_rules = Rule.objects.filter(active=True, element_id__in={i.element_id for i in items if i.element_id})
    for rule in element_rules.select_related("element"):
        for item in items:
            if item.element_id == rule.element_id:
                check = _element_check(rule, item, by_element)
                if check:
                    checks.append(check)
        used.append({"id": str(rule.id), "version": rule.version, "kind": rule.kind,
                     "element": rule.element.identifier})
    refs = {}
    for rule in Rule.objects.filter(active=True, resource=resource):
        checks.append(Check(str(rule.id), rule.kind, tuple(rule.items), _params_for_check(rule.kind, rule.params),
                            rule.blocking))
        used.append({"id": str(rule.id), "version": rule.version, "kind": rule.kind, "items": rule.items})
        ref_code = rule.params.get("resource") if rule.kind in (RuleKind.REFERENCE, RuleKind.CROSS_SOURCE) else None
        if ref_code:
            ref = Resource.objects.select_related("published").get(code=catalog.normalize_code(ref_code))
            ref_items = list(ref.published.items.order_by("position"))
            refs[ref_code] = (lake.open_table(ref.mount_target), ref_items, fieldcrypt.cipher_for(ref, ref_items))
    return Plan(checks=checks, refs=refs), used
