"""Validators for national identifiers and for passwords.

GB 11643-1999 citizen ID number: 17 digits + ISO 7064 MOD 11-2 check character.
GB 32100-2015 unified social credit code: 18 characters over a 31-character alphabet, last is a MOD 31 check.
GB 11714-1997 organization code: 8 characters + MOD 11 check character (embedded in the credit code).
"""

from __future__ import annotations

import datetime as _dt
import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

_ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_ID_CHECK = "10X98765432"
_ID_RE = re.compile(r"^[0-9]{17}[0-9X]\Z")


def citizen_id_check_char(first17: str) -> str:
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS)) % 11]


def is_citizen_id(value: str) -> bool:
    """GB 11643: shape, a real birth date not in the future, and the check character."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        return False
    try:
        born = _dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if born > _dt.date.today() or born.year < 1850:
        return False
    return citizen_id_check_char(value[:17]) == value[17]


_CC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CC_VALUE = {c: i for i, c in enumerate(_CC_ALPHABET)}
_CC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
_CC_RE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}\Z")

_OC_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]


def org_code_check_char(first8: str) -> str:
    """GB 11714 check character over digits and upper-case letters (A=10 … Z=35)."""
    total = sum((int(c) if c.isdigit() else ord(c) - 55) * w for c, w in zip(first8, _OC_WEIGHTS))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def credit_code_check_char(first17: str) -> str:
    return _CC_ALPHABET[(31 - sum(_CC_VALUE[c] * w for c, w in zip(first17, _CC_WEIGHTS)) % 31) % 31]


def is_credit_code(value: str) -> bool:
    """GB 32100: alphabet, registration-authority and region segments, and the check character."""
    if not isinstance(value, str) or not _CC_RE.match(value):
        return False
    return credit_code_check_char(value[:17]) == value[17]


def make_credit_code(authority: str, region6: str, org_code8: str) -> str:
    """Builds a valid credit code: 2 authority chars + 6-digit region + GB 11714 code + check."""
    org9 = org_code8 + org_code_check_char(org_code8)
    first17 = authority + region6 + org9
    return first17 + credit_code_check_char(first17)


_MOBILE_RE = re.compile(r"^1[3-9][0-9]{9}\Z")


def is_mobile(value: str) -> bool:
    """Mainland mobile numbers: 11 digits, 1 then 3-9 (MIIT numbering plan)."""
    return isinstance(value, str) and bool(_MOBILE_RE.match(value))


def validate_credit_code(value: str) -> None:
    if not is_credit_code(value):
        raise ValidationError(_("Not a valid unified social credit code (GB 32100)."), code="credit_code")


def validate_mobile(value: str) -> None:
    if value and not is_mobile(value):
        raise ValidationError(_("Not a valid mobile number."), code="mobile")


class PasswordComplexityValidator:
    """At least three of: upper-case, lower-case, digits, other characters (等保 password complexity)."""

    classes = (str.isupper, str.islower, str.isdigit, lambda c: not c.isalnum())

    def validate(self, password, user=None):
        present = sum(any(test(c) for c in password) for test in self.classes)
        if present < 3:
            raise ValidationError(
                _("The password must mix at least three of: upper-case letters, lower-case letters, digits, symbols."),
                code="password_too_simple",
            )

    def get_help_text(self):
        return _("Mix at least three of: upper-case letters, lower-case letters, digits, symbols.")
