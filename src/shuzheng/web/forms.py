from django import forms
from django.utils.translation import gettext_lazy as _

from shuzheng.core.errors import ServiceError


def show_service_error(form: forms.Form, exc: ServiceError) -> None:
    """Puts a service's field errors next to the form's fields (or at the top when no field matches)."""
    if not exc.errors:
        form.add_error(None, str(exc.detail))
    for err in exc.errors:
        form.add_error(err.field if err.field in form.fields else None, str(err.message))


class LoginForm(forms.Form):
    username = forms.CharField(label=_("Username"), max_length=40,
                               widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}))
    password = forms.CharField(label=_("Password"), max_length=200,
                               widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("6-digit code"),
        max_length=7,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True,
                                      "pattern": "[0-9 ]{6,7}"}),
    )
