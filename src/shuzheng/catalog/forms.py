"""Forms of the catalog pages. They only parse input: every rule (required metadata, the sharing and opening
terms, levels, one datum one source, lifecycle) is checked by catalog.services, whose field errors come back
next to the fields of the same name. So the field names here are the services' field names, and the choice
fields pass any value on for the service to judge (its message is the one the API gives too)."""

from __future__ import annotations

import csv
import io

from django import forms
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from shuzheng.catalog.models import (
    DataType,
    Format,
    Level,
    MountKind,
    OpenType,
    SharingMethod,
    SharingType,
    Subject,
    UpdateCycle,
)
from shuzheng.org.forms import organization_choices


class _ServiceChoiceField(forms.ChoiceField):
    """A select whose value the service judges (an unknown element or organization gets the service's
    message at the field, not Django's generic one)."""

    def valid_value(self, value):
        return True


class _Search(forms.TextInput):
    input_type = "search"


class _Date(forms.DateInput):
    input_type = "date"


def _blank(label) -> list:
    return [("", label)]


# ---- search ---------------------------------------------------------------------------------------------


SORT_CHOICES = [
    ("", _("Best match, or newest")),
    ("relevance", _("Best match")),
    ("newest", _("Newest")),
    ("name", _("Name")),
    ("code", _("Resource code")),
]


class CatalogSearchForm(forms.Form):
    """The text box and the sort order; the facet checkboxes are drawn from the service's counts."""

    q = forms.CharField(label=_("Search the catalog"), required=False, max_length=200,
                        widget=_Search(attrs={"placeholder": _("Name, summary, data item, keyword or code")}))
    sort = _ServiceChoiceField(label=_("Sort by"), required=False, choices=SORT_CHOICES)


class ElementFilterForm(forms.Form):
    q = forms.CharField(label=_("Search"), required=False, max_length=100,
                        widget=_Search(attrs={"placeholder": _("Identifier, name or definition")}))


class CodeValueFilterForm(forms.Form):
    q = forms.CharField(label=_("Search"), required=False, max_length=100,
                        widget=_Search(attrs={"placeholder": _("Code or name")}))


# ---- the resource form ----------------------------------------------------------------------------------


DEPARTMENT_OWN = "3"


def category_choices(categories, own_org_ids) -> list[tuple[str, str]]:
    """Every classification node as "code  name", indented by depth. Under 类 3 only the provider's own
    department 项 are offered, and "3" itself means "the provider's own" (created with the first resource)."""
    nodes = list(categories)
    choices = [("", "—")]
    for c in nodes:
        if c.code == DEPARTMENT_OWN:
            choices.append((c.code, "3 %s — %s" % (c.name, gettext("the provider department’s own classification"))))
            continue
        if c.code.startswith(DEPARTMENT_OWN) and (own_org_ids is not None and c.organization_id not in own_org_ids):
            continue
        indent = "\u3000" * (c.depth - 1)
        choices.append((c.code, f"{indent}{c.code} {c.name}"))
    return choices


class ResourceForm(forms.Form):
    category = _ServiceChoiceField(label=_("Classification (类/项/目/细目)"),
                                 help_text=_("The resource code is generated from it and never changes."))
    provider = _ServiceChoiceField(label=_("Provider"))
    name = forms.CharField(label=_("Name"), max_length=200)
    summary = forms.CharField(label=_("Summary"), max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))
    format = _ServiceChoiceField(label=_("Format"), choices=_blank("—") + list(Format.choices))
    sharing_type = _ServiceChoiceField(label=_("Sharing type"), choices=_blank("—") + list(SharingType.choices))
    sharing_conditions = forms.CharField(label=_("Sharing conditions"), required=False, max_length=2000,
                                         widget=forms.Textarea(attrs={"rows": 2}),
                                         help_text=_("Required for conditional sharing."))
    sharing_basis = forms.CharField(label=_("Legal basis for not sharing"), required=False, max_length=2000,
                                    widget=forms.Textarea(attrs={"rows": 2}),
                                    help_text=_("Required when the resource is not shared."))
    sharing_methods = forms.MultipleChoiceField(label=_("Sharing methods"), required=False,
                                                choices=SharingMethod.choices, widget=forms.CheckboxSelectMultiple)
    open_type = _ServiceChoiceField(label=_("Open type"), choices=_blank("—") + list(OpenType.choices),
                                    help_text=_("Only a resource graded general (一般) can be opened."))
    open_conditions = forms.CharField(label=_("Open conditions"), required=False, max_length=2000,
                                      widget=forms.Textarea(attrs={"rows": 2}),
                                      help_text=_("Required for conditional opening."))
    domestic_only = forms.BooleanField(label=_("Domestic only (不得出境)"), required=False,
                                       help_text=_("Webhooks and downloads of its data go only to destinations on "
                                                   "the domestic allow-list."))
    update_cycle = _ServiceChoiceField(label=_("Update cycle"), choices=_blank("—") + list(UpdateCycle.choices))
    level = _ServiceChoiceField(label=_("Classification level (GB/T 43697)"), required=False,
                                choices=_blank(_("The highest level of its items")) + list(Level.choices),
                                help_text=_("At least as high as its highest data item (就高从严)."))
    owner = _ServiceChoiceField(label=_("Owner (数据确权)"), required=False)
    manager = _ServiceChoiceField(label=_("Manager"), required=False)
    steward = forms.CharField(label=_("Steward"), required=False, max_length=40,
                              help_text=_("Username of the person answerable for the data."),
                              widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))
    keywords = forms.CharField(label=_("Keywords"), required=False, max_length=1000,
                               help_text=_("Separated by commas."))
    spatial_coverage = forms.CharField(label=_("Spatial coverage"), required=False, max_length=100)
    time_coverage_start = forms.CharField(label=_("Time coverage from"), required=False, max_length=20,
                                          widget=_Date)
    time_coverage_end = forms.CharField(label=_("Time coverage to"), required=False, max_length=20, widget=_Date)
    related_codes = forms.CharField(label=_("Related resource codes"), required=False, max_length=2000,
                                    help_text=_("Separated by commas, e.g. 101001001/000001."),
                                    widget=forms.TextInput(attrs={"spellcheck": "false"}))

    def __init__(self, *args, categories=None, providers=(), organizations=(), editing=False, **kwargs):
        super().__init__(*args, **kwargs)
        orgs = list(organizations)
        for name in ("owner", "manager"):
            self.fields[name].choices = organization_choices(orgs, blank=_("The provider"))
        if editing:
            # The classification and the provider make the code; they are fixed at registration.
            del self.fields["category"], self.fields["provider"]
            return
        self.fields["category"].choices = categories or [("", "—")]
        providers = list(providers)
        self.fields["provider"].choices = organization_choices(providers, blank=None if len(providers) == 1 else "—")

    def service_data(self) -> dict:
        data = {name: (value.strip() if isinstance(value, str) else value) for name, value in self.cleaned_data.items()}
        data["sharing_methods"] = list(data.get("sharing_methods") or [])
        return data


class ItemForm(forms.Form):
    """One row of the data-item table. Every cell is optional here: an empty row is skipped, and the
    service says what a filled-in row lacks (at items[n].field, shown on the row)."""

    name = forms.CharField(label=_("Item name"), required=False, max_length=100)
    data_type = _ServiceChoiceField(label=_("Type"), required=False,
                                    choices=_blank(_("As the element")) + list(DataType.choices))
    length = forms.CharField(label=_("Length"), required=False, max_length=10,
                             widget=forms.TextInput(attrs={"inputmode": "numeric", "size": 6}))
    nullable = forms.BooleanField(label=_("Nullable"), required=False, initial=True)
    is_key = forms.BooleanField(label=_("Key"), required=False)
    element = _ServiceChoiceField(label=_("Data element"), required=False)
    level = _ServiceChoiceField(label=_("Sensitivity level"), required=False,
                                choices=_blank(_("As the element")) + list(Level.choices))
    subject = _ServiceChoiceField(label=_("Data category"), required=False,
                                  choices=_blank(_("As the element")) + list(Subject.choices))
    # Not "…information": a label containing "format" would answer to the Format field's name too.
    sensitive_personal = forms.BooleanField(label=_("Sensitive personal data (敏感个人信息)"), required=False)
    domestic_only = forms.BooleanField(label=_("Domestic only"), required=False)
    authoritative = forms.BooleanField(label=_("Authoritative source"), required=False)

    FIELDS = ("name", "data_type", "length", "nullable", "is_key", "element", "level", "subject",
              "sensitive_personal", "domestic_only", "authoritative")

    def __init__(self, *args, elements=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["element"].choices = _blank("—") + [(e.identifier, f"{e.identifier} {e.name}") for e in elements]

    def is_blank(self) -> bool:
        data = self.cleaned_data
        return not any(data.get(n) for n in ("name", "data_type", "length", "is_key", "element", "level",
                                             "subject", "sensitive_personal", "domestic_only", "authoritative"))

    def service_item(self) -> dict:
        data = self.cleaned_data
        return {"name": data["name"].strip(), "data_type": data["data_type"], "length": data["length"].strip(),
                "nullable": data["nullable"], "is_key": data["is_key"], "element": data["element"],
                "level": data["level"], "subject": data["subject"], "sensitive_personal": data["sensitive_personal"],
                "domestic_only": data["domestic_only"], "authoritative": data["authoritative"]}


# All rows are "extra" as far as validation goes: nothing in a row is required, blank rows are skipped.
ItemFormSet = forms.formset_factory(ItemForm, extra=0, max_num=1000, absolute_max=1000)

BLANK_ROWS = 5


# ---- lifecycle, mounting, import ------------------------------------------------------------------------


class ReviewForm(forms.Form):
    comment = forms.CharField(label=_("Review comment"), required=False, max_length=2000,
                              widget=forms.Textarea(attrs={"rows": 3}),
                              help_text=_("Required when returning: say what must change."))


class DeprecateForm(forms.Form):
    reason = forms.CharField(label=_("Reason for deprecating"), required=False, max_length=2000,
                             widget=forms.Textarea(attrs={"rows": 2}))


class MountForm(forms.Form):
    kind = _ServiceChoiceField(label=_("Where the data lives"), choices=_blank("—") + list(MountKind.choices))
    target = forms.CharField(label=_("Target"), required=False, max_length=500,
                             help_text=_("A warehouse table as namespace.table, an https:// address, or a file path."),
                             widget=forms.TextInput(attrs={"spellcheck": "false"}))


class ImportForm(forms.Form):
    file = forms.FileField(label=_("Catalog workbook (.xlsx)"),
                           help_text=_("The resource sheet and the data-item sheet. A file with any error imports "
                                       "nothing."),
                           widget=forms.ClearableFileInput(attrs={"accept": ".xlsx"}))


class CompareForm(forms.Form):
    """Two version numbers to compare; the fields are named "from" and "to" as in the API."""

    def __init__(self, *args, numbers=(), **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(str(n), _("Version %(n)s") % {"n": n}) for n in numbers]
        self.fields["from"] = forms.TypedChoiceField(label=_("Compare version"), coerce=int, choices=choices)
        self.fields["to"] = forms.TypedChoiceField(label=_("with version"), coerce=int, choices=choices)


# ---- data standards: data elements and code tables ------------------------------------------------------


class ElementForm(forms.Form):
    """A data element (数据元). The identifier is given once, at creation; the service checks the rest."""

    identifier = forms.CharField(label=_("Identifier"), max_length=20,
                                 help_text=_("Capital letters and digits, e.g. DE00051. It never changes."),
                                 widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))
    name = forms.CharField(label=_("Name"), max_length=60)
    definition = forms.CharField(label=_("Definition"), max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))
    data_type = _ServiceChoiceField(label=_("Data type"), choices=_blank("—") + list(DataType.choices))
    format = forms.CharField(label=_("Format"), required=False, max_length=40,
                             help_text=_("GB/T 18391 notation: a letters, n digits, an letters or digits, c any "
                                         "character; a number after it is an exact length, “..” an upper limit "
                                         "(n1, c18, c..50); dates as YYYYMMDD."),
                             widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))
    value_domain = forms.CharField(label=_("Value domain"), required=False, max_length=200,
                                   help_text=_("The values allowed, in words, e.g. the standard they follow."))
    code_table = _ServiceChoiceField(label=_("Code table"), required=False)
    level = _ServiceChoiceField(label=_("Sensitivity level"), choices=list(Level.choices), initial=Level.GENERAL)
    subject = _ServiceChoiceField(label=_("Data category"), required=False, choices=list(Subject.choices),
                                  initial=Subject.OTHER)

    def __init__(self, *args, code_tables=(), editing=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["code_table"].choices = _blank(_("None")) + [
            (t.code, f"{t.standard or t.code} {t.name}") for t in code_tables]
        if editing:
            del self.fields["identifier"]

    def service_data(self) -> dict:
        return {name: (value.strip() if isinstance(value, str) else value) for name, value in self.cleaned_data.items()}


CODE_VALUE_LIMITS = (("code", 20), ("name", 100), ("parent", 20))


def code_value_lines(values) -> str:
    """A table's values as the textarea shows them: "code,name[,parent code]", quoted where needed."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for v in values:
        writer.writerow([v.code, v.name, v.parent_code] if v.parent_code else [v.code, v.name])
    return out.getvalue()


def parse_code_values(text: str) -> tuple[list[dict], list[int], list[str]]:
    """The textarea's lines as the service's values ({"code", "name", "parent"}), the line number each value
    came from, and the lines that could not be read. A line is "code,name[,parent code]", or the same
    separated by tabs as pasted from a spreadsheet; blank lines are skipped."""
    values, line_numbers, errors = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        delimiter = "\t" if "\t" in line else ","
        if delimiter == "," and "," not in line:
            line = line.replace("，", ",")  # typed with a Chinese input method
        try:
            cells = [c.strip() for c in next(csv.reader([line], delimiter=delimiter))]
        except csv.Error:
            cells = []
        while len(cells) > 2 and not cells[-1]:
            cells.pop()  # empty cells at the end of a spreadsheet row
        if len(cells) not in (2, 3):
            errors.append(gettext("Line %(n)s: write the code, the name and optionally the parent code, "
                                  "separated by commas or tabs.") % {"n": number})
            continue
        value = dict(zip(("code", "name", "parent"), cells + [""]))
        too_long = [(key, limit) for key, limit in CODE_VALUE_LIMITS if len(value[key]) > limit]
        if too_long:
            key, limit = too_long[0]
            message = (gettext("Line %(n)s: a name is at most %(limit)s characters.") if key == "name" else
                       gettext("Line %(n)s: a code is at most %(limit)s characters."))
            errors.append(message % {"n": number, "limit": limit})
            continue
        values.append(value)
        line_numbers.append(number)
    return values, line_numbers, errors


class CodeTableForm(forms.Form):
    """A code table (代码集) and all its values, one per line; saving replaces the values as a whole."""

    code = forms.CharField(label=_("Code"), max_length=40,
                           help_text=_("Letters, digits, “_”, “.” or “-”, e.g. GB_T_2261.1. It never changes."),
                           widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))
    name = forms.CharField(label=_("Name"), max_length=100)
    standard = forms.CharField(label=_("Standard"), required=False, max_length=60,
                               help_text=_("The standard it comes from, e.g. GB/T 2261.1-2003."))
    description = forms.CharField(label=_("Description"), required=False, max_length=4000,
                                  widget=forms.Textarea(attrs={"rows": 2}))
    values = forms.CharField(label=_("Code values"), required=False, max_length=500_000,
                             help_text=_("One value per line: code,name and optionally the parent code "
                                         "(1,男性 or 0101,谷物种植,01). Rows copied from a spreadsheet (separated "
                                         "by tabs) can be pasted as they are."),
                             widget=forms.Textarea(attrs={"rows": 16, "spellcheck": "false"}))

    def __init__(self, *args, editing=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.line_numbers: list[int] = []
        if editing:
            del self.fields["code"]

    def clean_values(self):
        values, self.line_numbers, errors = parse_code_values(self.cleaned_data["values"])
        if errors:
            raise forms.ValidationError(errors)
        return values

    def service_data(self) -> dict:
        return {name: (value.strip() if isinstance(value, str) else value) for name, value in self.cleaned_data.items()}
