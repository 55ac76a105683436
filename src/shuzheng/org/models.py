from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from shuzheng.core.models import BaseModel
from shuzheng.core.validators import validate_credit_code, validate_mobile
from shuzheng.org.roles import ADMIN_TRIO, Perm, Role


class Region(BaseModel):
    """A GB/T 2260 division (6 digits) or a statistical division below it (9-digit town, 12-digit village)."""

    class Level(models.TextChoices):
        PROVINCE = "province", _("Province")
        PREFECTURE = "prefecture", _("Prefecture")
        COUNTY = "county", _("County")
        TOWN = "town", _("Town or street")
        VILLAGE = "village", _("Village or community")

    code = models.CharField(_("code"), max_length=12, unique=True, validators=[RegexValidator(r"^\d{6}(\d{3}(\d{3})?)?$")])
    name = models.CharField(_("name"), max_length=100)
    level = models.CharField(_("level"), max_length=16, choices=Level.choices)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    # Materialized path of codes ("130000/130682/130682001/") so a subtree is one indexed prefix query.
    path = models.CharField(max_length=200, db_index=True, editable=False)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return f"{self.name} ({self.code})"


class Organization(BaseModel):
    class Kind(models.TextChoices):
        PROVINCE_PLATFORM = "province_platform", _("Province platform (upper node)")
        CITY_GOVERNMENT = "city_government", _("City government")
        PLATFORM_OFFICE = "platform_office", _("Platform office")
        DEPARTMENT = "department", _("Municipal department")
        TOWN = "town", _("Town or street government")
        PARTY_COMMITTEE = "party_committee", _("Party committee")
        PEOPLES_CONGRESS = "peoples_congress", _("People's Congress")
        CPPCC = "cppcc", _("CPPCC")
        DISCIPLINE_COMMISSION = "discipline_commission", _("Discipline commission")
        COURT = "court", _("Court")
        PROCURATORATE = "procuratorate", _("Procuratorate")
        MILITARY = "military", _("Military")

    EXTERNAL_KINDS = frozenset(
        {
            Kind.PARTY_COMMITTEE,
            Kind.PEOPLES_CONGRESS,
            Kind.CPPCC,
            Kind.DISCIPLINE_COMMISSION,
            Kind.COURT,
            Kind.PROCURATORATE,
            Kind.MILITARY,
        }
    )

    code = models.CharField(_("credit code"), max_length=18, unique=True, validators=[validate_credit_code])
    name = models.CharField(_("name"), max_length=100, unique=True)
    short_name = models.CharField(_("short name"), max_length=50, blank=True)
    name_en = models.CharField(_("English name"), max_length=150, blank=True)
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="organizations")
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["kind", "code"]

    def __str__(self):
        return self.name


class UserManager(BaseUserManager):
    def get_by_natural_key(self, username):
        return self.get(username=username)


username_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{1,39}$",
    _("2 to 40 characters: letters, digits, '.', '_' or '-', starting with a letter or digit."),
)


class User(AbstractBaseUser, BaseModel):
    username = models.CharField(_("username"), max_length=40, unique=True, validators=[username_validator])
    full_name = models.CharField(_("full name"), max_length=60)
    email = models.EmailField(_("e-mail"), blank=True)
    mobile = models.CharField(_("mobile"), max_length=11, blank=True, validators=[validate_mobile])
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="users")
    is_active = models.BooleanField(_("active"), default=True)
    # Login-failure handling.
    failed_logins = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)
    # TOTP (RFC 6238). The last accepted time step stops a code being replayed inside its window.
    totp_secret = models.CharField(max_length=64, blank=True)
    totp_confirmed_at = models.DateTimeField(null=True, blank=True)
    totp_last_step = models.BigIntegerField(null=True, blank=True)
    password_changed_at = models.DateTimeField(null=True, blank=True)
    large_text = models.BooleanField(_("large text"), default=False)

    USERNAME_FIELD = "username"
    REQUIRED_FIELDS = ["full_name"]
    objects = UserManager()

    class Meta:
        ordering = ["username"]

    def __str__(self):
        return f"{self.full_name} ({self.username})"

    @property
    def role_set(self) -> frozenset[str]:
        cached = getattr(self, "_role_cache", None)
        if cached is None:
            cached = frozenset(self.roles.values_list("role", flat=True))
            self._role_cache = cached
        return cached

    @property
    def two_factor_enrolled(self) -> bool:
        return self.totp_confirmed_at is not None

    @property
    def two_factor_required(self) -> bool:
        from shuzheng.org.roles import TWO_FACTOR_REQUIRED

        return bool(self.role_set & TWO_FACTOR_REQUIRED)

    def is_locked(self, now=None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or timezone.now())


class UserRole(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="roles")
    role = models.CharField(max_length=32, choices=Role.choices)
    # Copied from the user when granted, so the database itself can say "one data officer per department".
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    # True for the three administrator roles: the database refuses a second one for the same person.
    admin_trio = models.BooleanField(default=False, editable=False)
    granted_by = models.CharField(max_length=80)
    granted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "role"], name="user_role_unique"),
            models.UniqueConstraint(fields=["user"], condition=Q(admin_trio=True), name="one_admin_role_per_person"),
            models.UniqueConstraint(
                fields=["organization"], condition=Q(role="data_officer"), name="one_data_officer_per_org"
            ),
        ]

    def save(self, *args, **kwargs):
        self.admin_trio = self.role in ADMIN_TRIO
        super().save(*args, **kwargs)


class AccessGrant(BaseModel):
    """The owner organization lets the grantee organization exercise a read permission over the owner's
    objects (for example to see its application systems). Scoping consults these; nothing else does."""

    owner = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="grants_given")
    grantee = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="grants_received")
    permission = models.CharField(max_length=32, choices=Perm.choices)
    reason = models.CharField(max_length=200)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    granted_by = models.CharField(max_length=80)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "grantee", "permission"], condition=Q(revoked_at__isnull=True), name="one_live_grant"
            )
        ]


system_code_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{1,47}$", _("2 to 48 characters: lower-case letters, digits or '-'.")
)


class ApplicationSystem(BaseModel):
    """An application system (应用系统) of an organization; it calls the platform with API keys."""

    code = models.CharField(_("code"), max_length=48, unique=True, validators=[system_code_validator])
    name = models.CharField(_("name"), max_length=100)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="systems")
    description = models.TextField(_("description"), blank=True)
    contact = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return f"{self.name} ({self.code})"


class ApiKey(BaseModel):
    """Only the SM3 digest of a key is stored; the key itself is shown once when created."""

    system = models.ForeignKey(ApplicationSystem, on_delete=models.CASCADE, related_name="keys")
    label = models.CharField(_("label"), max_length=80)
    prefix = models.CharField(max_length=16, db_index=True)
    digest = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(_("expires at"))
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=80)
    revoked_by = models.CharField(max_length=80, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def status(self, now=None) -> str:
        now = now or timezone.now()
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= now:
            return "expired"
        return "active"
