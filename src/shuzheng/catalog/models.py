"""The data resource catalog (D2, D7): classification, resources and their versions, data items, data
elements and code tables.

A Resource is the stable identity (its code never changes and is never reused); everything a department
describes lives on a ResourceVersion. Version 1 is the first registration; changing a published resource
opens a new version that goes through review while the published one stays live. Versions are kept for
ever so any two can be compared.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from shuzheng.core.models import BaseModel
from shuzheng.org.models import Organization, User


class Level(models.TextChoices):
    """GB/T 43697 data grading. A resource is at least as high as its highest item (就高从严)."""

    GENERAL = "general", _("General (一般)")
    IMPORTANT = "important", _("Important (重要)")
    CORE = "core", _("Core (核心)")


LEVEL_RANK = {Level.GENERAL: 0, Level.IMPORTANT: 1, Level.CORE: 2}


class Subject(models.TextChoices):
    """GB/T 43697 data category by whom the data is about (数据分类). Ordered from the least to the most
    protected, as security.policy's "subjects" key ranks them."""

    OTHER = "other", _("Other (其他)")
    PUBLIC_AFFAIRS = "public_affairs", _("Public affairs (公共事务)")
    LEGAL_ENTITY = "legal_entity", _("Legal entity (法人)")
    PERSONAL = "personal", _("Personal (个人)")


class Kind(models.TextChoices):
    """The guide's first classification digit (类)."""

    BASE = "base", _("Base database (基础)")
    THEMATIC = "thematic", _("Thematic database (主题)")
    DEPARTMENT = "department", _("Department resource (部门)")


KIND_OF_CLASS = {"1": Kind.BASE, "2": Kind.THEMATIC, "3": Kind.DEPARTMENT}


class Category(BaseModel):
    """One node of the guide's classification: 类 (1 digit), 项 (+2), 目 (+3), 细目 (+3)."""

    SEGMENTS = (1, 2, 3, 3)  # digits added by 类, 项, 目, 细目
    CODE_WIDTH = sum(SEGMENTS)

    code = models.CharField(_("classification code"), max_length=9, unique=True)
    name = models.CharField(_("name"), max_length=100)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    # A department's own 项 under 类 3.
    organization = models.OneToOneField(Organization, null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="catalog_category")
    # The next sequence number (后段码) of resources registered directly under this node; only ever grows.
    next_sequence = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["code"]
        verbose_name_plural = "categories"

    def __str__(self):
        return f"{self.code} {self.name}"

    @property
    def kind(self) -> str:
        return KIND_OF_CLASS[self.code[0]]

    @property
    def depth(self) -> int:
        return {1: 1, 3: 2, 6: 3, 9: 4}[len(self.code)]

    def full_name(self) -> str:
        names, node = [], self
        while node is not None:
            names.append(node.name)
            node = node.parent
        return " / ".join(reversed(names))


class CodeTable(BaseModel):
    """A code set (代码集) such as GB/T 2261.1 sex or GB/T 4754 industries."""

    code = models.CharField(_("code"), max_length=40, unique=True)
    name = models.CharField(_("name"), max_length=100)
    standard = models.CharField(_("standard"), max_length=60, blank=True)
    description = models.TextField(_("description"), blank=True)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return f"{self.standard or self.code} {self.name}"


class CodeValue(models.Model):
    table = models.ForeignKey(CodeTable, on_delete=models.CASCADE, related_name="values")
    code = models.CharField(_("code"), max_length=20)
    name = models.CharField(_("name"), max_length=100)
    parent_code = models.CharField(_("parent code"), max_length=20, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["table", "position"]
        constraints = [models.UniqueConstraint(fields=["table", "code"], name="code_value_unique")]


class DataType(models.TextChoices):
    STRING = "string", _("String")
    INTEGER = "integer", _("Integer")
    DECIMAL = "decimal", _("Decimal")
    DATE = "date", _("Date")
    DATETIME = "datetime", _("Date and time")
    BOOLEAN = "boolean", _("Boolean")


class DataElement(BaseModel):
    """A standard data element (数据元). `authoritative` is the one resource that is the element's source of
    truth (一数一源); every other resource carrying the element holds a copy of it."""

    identifier = models.CharField(_("identifier"), max_length=20, unique=True)
    name = models.CharField(_("name"), max_length=60, unique=True)
    definition = models.TextField(_("definition"))
    data_type = models.CharField(_("data type"), max_length=10, choices=DataType.choices)
    format = models.CharField(_("format"), max_length=40, blank=True)
    value_domain = models.CharField(_("value domain"), max_length=200, blank=True)
    code_table = models.ForeignKey(CodeTable, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="elements")
    level = models.CharField(_("level"), max_length=10, choices=Level.choices, default=Level.GENERAL)
    # The category an item carrying this element gets unless it says otherwise.
    subject = models.CharField(_("data category"), max_length=16, choices=Subject.choices, default=Subject.OTHER)
    authoritative = models.ForeignKey("Resource", null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="authoritative_elements")

    class Meta:
        ordering = ["identifier"]

    def __str__(self):
        return f"{self.identifier} {self.name}"


class Format(models.TextChoices):
    DATABASE = "database", _("Database")
    SPREADSHEET = "spreadsheet", _("Spreadsheet")
    DOCUMENT = "document", _("Document")
    IMAGE = "image", _("Image")
    MEDIA = "media", _("Audio or video")
    API = "api", _("Interface")
    OTHER = "other", _("Other")


class SharingType(models.TextChoices):
    UNCONDITIONAL = "unconditional", _("Unconditional sharing (无条件共享)")
    CONDITIONAL = "conditional", _("Conditional sharing (有条件共享)")
    NONE = "none", _("Not shared (不予共享)")


class SharingMethod(models.TextChoices):
    INTERFACE = "interface", _("Interface")
    TABLE = "table", _("Table")
    FILE = "file", _("File")


class OpenType(models.TextChoices):
    OPEN = "open", _("Open (无条件开放)")
    CONDITIONAL = "conditional", _("Conditionally open (有条件开放)")
    CLOSED = "closed", _("Not open (不予开放)")


class UpdateCycle(models.TextChoices):
    REALTIME = "realtime", _("Real time")
    DAILY = "daily", _("Daily")
    WEEKLY = "weekly", _("Weekly")
    MONTHLY = "monthly", _("Monthly")
    QUARTERLY = "quarterly", _("Quarterly")
    SEMIANNUAL = "semiannual", _("Every six months")
    YEARLY = "yearly", _("Yearly")
    IRREGULAR = "irregular", _("Irregular")


class Status(models.TextChoices):
    DRAFT = "draft", _("Draft")
    SUBMITTED = "submitted", _("Submitted")
    RETURNED = "returned", _("Returned")
    APPROVED = "approved", _("Approved")
    PUBLISHED = "published", _("Published")
    SUPERSEDED = "superseded", _("Superseded")
    DEPRECATED = "deprecated", _("Deprecated")


# Versions a department may still edit, and versions under way (at most one per resource).
EDITABLE = (Status.DRAFT, Status.RETURNED)
IN_PROGRESS = (Status.DRAFT, Status.SUBMITTED, Status.RETURNED, Status.APPROVED)


class MountKind(models.TextChoices):
    TABLE = "table", _("Warehouse table")
    API = "api", _("External API")
    FILE = "file", _("Files")


class Resource(BaseModel):
    """The stable identity of a data resource: its code, classification and provider. `published` is the
    live version; `pending` the version under way (draft, submitted, returned or approved), if any."""

    code = models.CharField(_("resource code"), max_length=20, unique=True)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="resources")
    provider = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="resources")
    published = models.OneToOneField("ResourceVersion", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    pending = models.OneToOneField("ResourceVersion", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    # The lifecycle state people see: the pending version's state until first publication, then published
    # (a revision under way does not hide the live version), then deprecated.
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.DRAFT)
    deprecated_at = models.DateTimeField(null=True, blank=True)
    # Mounting (挂接): where the published resource's data lives.
    mount_kind = models.CharField(_("mount kind"), max_length=8, choices=MountKind.choices, blank=True)
    mount_target = models.CharField(_("mount target"), max_length=500, blank=True)
    mounted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["code"]
        indexes = [models.Index(fields=["provider", "status"])]

    def __str__(self):
        return self.code

    @property
    def is_mounted(self) -> bool:
        return bool(self.mount_kind)

    @property
    def current(self) -> "ResourceVersion":
        """The version people see first: the published one, else the one under way."""
        return self.published or self.pending


class ResourceVersion(BaseModel):
    """Everything the catalog guide's metadata and the 数据确权 extensions say about one version."""

    resource = models.ForeignKey(Resource, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.DRAFT)

    name = models.CharField(_("name"), max_length=200)
    summary = models.TextField(_("summary"))
    format = models.CharField(_("format"), max_length=12, choices=Format.choices)
    sharing_type = models.CharField(_("sharing type"), max_length=14, choices=SharingType.choices)
    sharing_conditions = models.TextField(_("sharing conditions"), blank=True)
    sharing_basis = models.TextField(_("legal basis for not sharing"), blank=True)
    sharing_methods = models.JSONField(_("sharing methods"), default=list, blank=True)
    open_type = models.CharField(_("open type"), max_length=12, choices=OpenType.choices)
    open_conditions = models.TextField(_("open conditions"), blank=True)
    update_cycle = models.CharField(_("update cycle"), max_length=12, choices=UpdateCycle.choices)
    level = models.CharField(_("classification level"), max_length=10, choices=Level.choices)
    owner = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+", verbose_name=_("owner"))
    manager = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+",
                                verbose_name=_("manager"))
    steward = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                verbose_name=_("steward"))
    keywords = models.JSONField(_("keywords"), default=list, blank=True)
    spatial_coverage = models.CharField(_("spatial coverage"), max_length=100, blank=True)
    time_coverage_start = models.DateField(_("time coverage from"), null=True, blank=True)
    time_coverage_end = models.DateField(_("time coverage to"), null=True, blank=True)
    related_codes = models.JSONField(_("related resource codes"), default=list, blank=True)
    # Export control (出境): the data may go only to destinations on the domestic allow-list.
    domestic_only = models.BooleanField(_("domestic only (不得出境)"), default=False)

    published_at = models.DateTimeField(_("publish date"), null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=80, blank=True)

    class Meta:
        ordering = ["resource", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["resource", "number"], name="version_number_unique"),
            # At most one version under way and one published per resource, whatever the code does.
            models.UniqueConstraint(fields=["resource"], condition=Q(status__in=IN_PROGRESS),
                                    name="one_version_in_progress"),
            models.UniqueConstraint(fields=["resource"], condition=Q(status="published"),
                                    name="one_published_version"),
        ]

    def __str__(self):
        return f"{self.resource.code} v{self.number}"


class DataItem(models.Model):
    """A 信息项 of one version."""

    version = models.ForeignKey(ResourceVersion, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    name = models.CharField(_("name"), max_length=100)
    data_type = models.CharField(_("data type"), max_length=10, choices=DataType.choices)
    length = models.PositiveIntegerField(_("length"), null=True, blank=True)
    nullable = models.BooleanField(_("nullable"), default=True)
    is_key = models.BooleanField(_("key"), default=False)
    element = models.ForeignKey(DataElement, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="items", verbose_name=_("data element"))
    level = models.CharField(_("sensitivity level"), max_length=10, choices=Level.choices, default=Level.GENERAL)
    subject = models.CharField(_("data category"), max_length=16, choices=Subject.choices, default=Subject.OTHER)
    # 敏感个人信息 (PIPL art. 28): only for personal items, and at least important.
    sensitive_personal = models.BooleanField(_("sensitive personal information"), default=False)
    domestic_only = models.BooleanField(_("domestic only (不得出境)"), default=False)
    # This resource claims to be the element's authoritative source (一数一源).
    authoritative = models.BooleanField(_("authoritative source"), default=False)

    class Meta:
        ordering = ["version", "position"]
        constraints = [models.UniqueConstraint(fields=["version", "name"], name="item_name_unique")]


DISCOVERY_KINDS = {
    "id_number": _("citizen ID numbers"),
    "credit_code": _("unified social credit codes"),
    "bank_card": _("bank card numbers"),
    "mobile": _("mobile numbers"),
    "email": _("e-mail addresses"),
    "plate": _("vehicle plates"),
    "name": _("personal names"),
    "address": _("addresses"),
}


class DiscoveryFinding(BaseModel):
    """What a load's data showed about one item (security.discovery): the kind of values most of a column's
    sampled values are, and the category and level that implies. `flagged` findings (the data shows more
    than the item declares) block publishing and opening the resource until a published version declares
    the item at least that high (`resolved_at`)."""

    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="findings")
    version = models.ForeignKey(ResourceVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    load_id = models.UUIDField(db_index=True)
    item = models.CharField(_("data item"), max_length=100)
    kind = models.CharField(_("kind of data"), max_length=20)
    share = models.FloatField(_("share of sampled values"))
    sampled = models.PositiveIntegerField(_("values sampled"))
    matched = models.PositiveIntegerField(_("values matching"))
    declared_subject = models.CharField(max_length=16, choices=Subject.choices)
    declared_level = models.CharField(max_length=10, choices=Level.choices)
    declared_sensitive = models.BooleanField(default=False)
    implied_subject = models.CharField(max_length=16, choices=Subject.choices)
    implied_level = models.CharField(max_length=10, choices=Level.choices)
    implied_sensitive = models.BooleanField(default=False)
    flagged = models.BooleanField(default=False)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at", "item"]
        indexes = [models.Index(fields=["resource", "resolved_at"])]

    def __str__(self):
        return f"{self.resource_id} {self.item}: {self.kind}"

    @property
    def kind_label(self) -> str:
        return str(DISCOVERY_KINDS.get(self.kind, self.kind))

    @property
    def percent(self) -> str:
        return f"{self.share * 100:.0f}"


class ReviewEvent(models.Model):
    """The history of a version: who submitted, returned, approved, published or deprecated it, and why."""

    class Action(models.TextChoices):
        CREATE = "create", pgettext_lazy("review event", "Created")
        SUBMIT = "submit", _("Submitted")
        RETURN = "return", _("Returned")
        APPROVE = "approve", _("Approved")
        PUBLISH = "publish", _("Published")
        DEPRECATE = "deprecate", _("Deprecated")
        MOUNT = "mount", _("Mounted")
        UNMOUNT = "unmount", _("Unmounted")

    version = models.ForeignKey(ResourceVersion, on_delete=models.PROTECT, related_name="events")
    action = models.CharField(max_length=12, choices=Action.choices)
    actor = models.CharField(max_length=80)
    comment = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]


class SearchDocument(models.Model):
    """The search index's input for one resource: jieba tokens of the version people see, and the facet
    values. Written by the service in the same transaction as the change; `catalog.search` builds its
    in-memory index from these rows."""

    resource = models.OneToOneField(Resource, primary_key=True, on_delete=models.CASCADE, related_name="search")
    name_tokens = models.TextField()
    tokens = models.TextField()
    sort_key = models.CharField(max_length=40, db_index=True)


class SearchGeneration(models.Model):
    """Bumped with every catalog change; a process whose index is older rebuilds it."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    value = models.PositiveBigIntegerField(default=0)
