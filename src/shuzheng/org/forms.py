"""Forms of the organization pages. They only parse input: every rule is checked by org.services, whose
field errors come back next to the fields of the same name (web.forms.show_service_error). So the field
names here are the services' field names."""

from django import forms
from django.conf import settings
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from shuzheng.org import services
from shuzheng.org.models import Organization
from shuzheng.org.roles import Role


def organization_choices(orgs, blank=None) -> list[tuple[str, str]]:
    choices = [("", blank)] if blank is not None else []
    return choices + [(o.code, f"{o.name} ({o.code})") for o in orgs]


def region_choices() -> list[tuple[str, str]]:
    return [(r.code, f"{r.name} ({r.code})") for r in services.list_regions().order_by("path")]


class _ScopeChoiceField(forms.ChoiceField):
    """A filter's organization select: the choices list what the actor can see, but any code is passed on,
    so the service (which scopes every list) answers an out-of-scope code with an empty list."""

    def valid_value(self, value):
        return True


class _Search(forms.TextInput):
    input_type = "search"


# ---- organizations ----------------------------------------------------------------------------------


class OrganizationFilterForm(forms.Form):
    q = forms.CharField(label=_("Search"), required=False, max_length=100,
                        widget=_Search(attrs={"placeholder": _("Name or credit code")}))
    kind = forms.ChoiceField(label=_("Kind"), required=False,
                             choices=[("", _("All kinds"))] + list(Organization.Kind.choices))


class OrganizationForm(forms.Form):
    code = forms.CharField(label=_("Unified social credit code"), max_length=18,
                           help_text=_("18 characters (GB 32100)."),
                           widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))
    name = forms.CharField(label=_("Name"), max_length=100)
    short_name = forms.CharField(label=_("Short name"), max_length=50, required=False)
    name_en = forms.CharField(label=_("English name"), max_length=150, required=False)
    kind = forms.ChoiceField(label=_("Kind"), choices=[("", "—")] + list(Organization.Kind.choices))
    parent = forms.ChoiceField(label=_("Parent organization"), required=False)
    region = forms.ChoiceField(label=_("Region"))
    is_active = forms.BooleanField(label=_("Active"), required=False, initial=True)

    def __init__(self, *args, organizations=(), editing=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["parent"].choices = organization_choices(organizations, blank=_("None (top level)"))
        self.fields["region"].choices = [("", "—")] + region_choices()
        if editing:
            del self.fields["code"]
        else:
            del self.fields["is_active"]


# ---- users ------------------------------------------------------------------------------------------


class UserFilterForm(forms.Form):
    q = forms.CharField(label=_("Search"), required=False, max_length=60,
                        widget=_Search(attrs={"placeholder": _("Username or full name")}))
    organization = _ScopeChoiceField(label=_("Organization"), required=False)
    role = forms.ChoiceField(label=_("Role"), required=False, choices=[("", _("All roles"))] + list(Role.choices))

    def __init__(self, *args, organizations=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["organization"].choices = organization_choices(organizations, blank=_("All organizations"))


class UserCreateForm(forms.Form):
    username = forms.CharField(label=_("Username"), max_length=40,
                               widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))
    full_name = forms.CharField(label=_("Full name"), max_length=60)
    organization = forms.ChoiceField(label=_("Organization"))
    email = forms.CharField(label=_("E-mail"), max_length=254, required=False,
                            widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    mobile = forms.CharField(label=_("Mobile"), max_length=20, required=False,
                             widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "off"}))
    password = forms.CharField(label=_("Initial password"), max_length=200, strip=False,
                               widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    def __init__(self, *args, organizations=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["password"].help_text = gettext(
            "At least %(n)s characters, mixing three of: upper-case letters, lower-case letters, digits, symbols. "
            "Tell it to the person through a separate channel."
        ) % {"n": settings.PASSWORD_MIN_LENGTH}
        self.fields["organization"].choices = organization_choices(organizations, blank="—")


class UserEditForm(forms.Form):
    full_name = forms.CharField(label=_("Full name"), max_length=60)
    email = forms.CharField(label=_("E-mail"), max_length=254, required=False,
                            widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    mobile = forms.CharField(label=_("Mobile"), max_length=20, required=False,
                             widget=forms.TextInput(attrs={"inputmode": "tel", "autocomplete": "off"}))
    organization = forms.ChoiceField(label=_("Organization"))
    is_active = forms.BooleanField(label=_("Active (may sign in)"), required=False)

    def __init__(self, *args, organizations=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["organization"].choices = organization_choices(organizations)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"))

    def __init__(self, *args, held=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = [("", "—")] + [(v, label) for v, label in Role.choices if v not in held]


class PasswordChangeForm(forms.Form):
    old_password = forms.CharField(label=_("Current password"), max_length=200, strip=False,
                                   widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))
    new_password = forms.CharField(label=_("New password"), max_length=200, strip=False,
                                   widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    new_password2 = forms.CharField(label=_("New password again"), max_length=200, strip=False,
                                    widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["new_password"].help_text = gettext(
            "At least %(n)s characters, mixing three of: upper-case letters, lower-case letters, digits, symbols."
        ) % {"n": settings.PASSWORD_MIN_LENGTH}

    def clean(self):
        data = super().clean()
        if data.get("new_password") and data.get("new_password2") and data["new_password"] != data["new_password2"]:
            self.add_error("new_password2", _("The two new passwords differ."))
        return data


# ---- application systems and keys ---------------------------------------------------------------------


class SystemFilterForm(forms.Form):
    organization = _ScopeChoiceField(label=_("Organization"), required=False)

    def __init__(self, *args, organizations=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["organization"].choices = organization_choices(organizations, blank=_("All organizations"))


class SystemForm(forms.Form):
    code = forms.CharField(label=_("Code"), max_length=48,
                           help_text=_("2 to 48 characters: lower-case letters, digits or '-'."),
                           widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))
    name = forms.CharField(label=_("Name"), max_length=100)
    organization = forms.ChoiceField(label=_("Organization"))
    description = forms.CharField(label=_("Description"), required=False, max_length=2000,
                                  widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, organizations=(), **kwargs):
        super().__init__(*args, **kwargs)
        orgs = list(organizations)
        self.fields["organization"].choices = organization_choices(orgs, blank=None if len(orgs) == 1 else "—")


class KeyForm(forms.Form):
    label = forms.CharField(label=_("Label"), max_length=80, required=False,
                            help_text=_("What the key is for, e.g. the server that uses it."))
    # The service checks the number and its range (1 to API_KEY_MAX_DAYS); the form passes on what was typed.
    days = forms.CharField(label=_("Valid for (days)"), initial="90", required=False, max_length=10,
                           widget=forms.NumberInput(attrs={"min": 1}))

    def clean_days(self):
        value = self.cleaned_data["days"].strip()
        return int(value) if value.isdigit() else value

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["days"].help_text = gettext("1 to %(n)s days.") % {"n": settings.API_KEY_MAX_DAYS}
