"""Input of the data pages and the data API: uploads streamed to disk, the upload form and the rule form.

They only parse: who may load, which modes, encodings and formats exist, whether the columns match and
what makes a rule valid are decided by ingest.services and quality.services, whose field errors come back
next to the fields of the same name. So the choice fields pass any value on for the service to judge (its
message is the one the API and the CLI give too).

Uploaded files never sit in memory: `HomeUploadHandler` streams each one to a temporary file under
SHUZHENG_HOME/tmp, stops at the upload limit, and the file is deleted when the request closes it (after the
load)."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from shuzheng.core.errors import FieldError, ValidationFailed
from shuzheng.ingest.models import Mode
from shuzheng.quality.models import RuleKind

DEFAULT_UPLOAD_LIMIT = 2 * 1024 ** 3  # 2 GB
ENCODINGS = [("", _("Detect")), ("utf-8", "UTF-8"), ("gbk", "GBK"), ("gb18030", "GB18030")]
FORMATS = [("", _("By the file name")), ("csv", "CSV"), ("xlsx", "XLSX"), ("json", "JSON"),
           ("jsonl", "JSON Lines"), ("parquet", "Parquet")]


# ---- uploads --------------------------------------------------------------------------------------------


def upload_limit() -> int:
    """The largest file a load accepts, in bytes: settings.INGEST_MAX_UPLOAD_BYTES, else 2 GB."""
    return int(getattr(settings, "INGEST_MAX_UPLOAD_BYTES", DEFAULT_UPLOAD_LIMIT))


def upload_dir() -> Path:
    path = Path(settings.HOME) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


class HomeUploadedFile(UploadedFile):
    """An upload in a named temporary file under SHUZHENG_HOME/tmp, removed when closed."""

    def __init__(self, name, content_type, size, charset, content_type_extra=None):
        suffix = os.path.splitext(name or "")[1][:16]
        file = tempfile.NamedTemporaryFile(prefix="upload-", suffix=".upload" + suffix, dir=upload_dir())
        super().__init__(file, name, content_type, size, charset, content_type_extra)

    def temporary_file_path(self) -> str:
        return self.file.name

    def close(self):
        try:
            return self.file.close()
        except FileNotFoundError:
            pass  # already removed


class HomeUploadHandler(FileUploadHandler):
    """Streams every file of a multipart request to disk. A file over the limit is dropped (its bytes are
    read and discarded) and `request.upload_too_large` is set, so the view can name the field."""

    def __init__(self, request=None):
        super().__init__(request)
        self.limit = upload_limit()
        self.received, self.skipped = 0, False
        self.file = None

    def new_file(self, field_name, file_name, content_type, content_length, charset=None, content_type_extra=None):
        super().new_file(field_name, file_name, content_type, content_length, charset, content_type_extra)
        self.received, self.skipped = 0, False
        self.file = HomeUploadedFile(self.file_name, self.content_type, 0, self.charset, self.content_type_extra)

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.file.close()  # removes what was written; the parser closes it again, which is harmless
            self.skipped = True
            if self.request is not None:
                self.request.upload_too_large = self.field_name
            raise SkipFile()
        self.file.write(raw_data)
        return None

    def file_complete(self, file_size):
        if self.file is None or self.skipped:
            return None
        self.file.seek(0)
        self.file.size = file_size
        return self.file

    def upload_interrupted(self):
        if self.file is not None:
            self.file.close()


def stream_uploads(view):
    """Makes `view` stream its uploads to SHUZHENG_HOME/tmp. It must run before anything reads the body
    (the CSRF check does): wrap a csrf_exempt view whose inner view is csrf_protect'ed, or a Ninja
    operation (decorate_view wraps it before its authentication)."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        request.upload_handlers = [HomeUploadHandler(request)]
        return view(request, *args, **kwargs)

    return wrapper


def too_large_error(request) -> ValidationFailed | None:
    field = getattr(request, "upload_too_large", None)
    if not field:
        return None
    message = gettext("The file is larger than %(limit)s, the most one load accepts.") % {
        "limit": filesizeformat(upload_limit())}
    return ValidationFailed(message, [FieldError(field, message)])


def no_file_error() -> ValidationFailed:
    return ValidationFailed.of("file", gettext("Choose a file to load."))


def parse_mapping_json(raw: str | None) -> dict | None:
    """The API's mapping field: a JSON object {data item: source column}."""
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValidationFailed.of("mapping", gettext(
            'The mapping is a JSON object from data item to source column, e.g. {"姓名": "XM"}.'))
    return value


# ---- the upload form ------------------------------------------------------------------------------------


class _ServiceChoiceField(forms.ChoiceField):
    """A select whose value the service judges."""

    def valid_value(self, value):
        return True


class UploadForm(forms.Form):
    file = forms.FileField(label=_("File"), required=False, help_text=_(
        "CSV (UTF-8, GBK or GB18030), XLSX, JSON, JSON Lines or Parquet."))
    mode = _ServiceChoiceField(label=_("Mode"), choices=Mode.choices, initial=Mode.APPEND, help_text=_(
        "Append adds the rows; upsert replaces rows with the same key; replace makes the file the whole table."))
    encoding = _ServiceChoiceField(label=_("Encoding"), choices=ENCODINGS, required=False)
    format = _ServiceChoiceField(label=_("Format"), choices=FORMATS, required=False)
    sheet = forms.CharField(label=_("Sheet"), max_length=100, required=False,
                            help_text=_("XLSX only; the first sheet when empty."))
    mapping = forms.CharField(
        label=_("Column mapping"), required=False, max_length=20_000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "姓名=XM\n公民身份号码=SFZH"}),
        help_text=_("One “data item=source column” per line, for columns whose names differ from the items."))

    def clean_mapping(self) -> dict:
        mapping, bad = {}, []
        for n, line in enumerate(self.cleaned_data["mapping"].splitlines(), start=1):
            if not line.strip():
                continue
            item, sep, column = line.partition("=")
            if not sep or not item.strip() or not column.strip():
                bad.append(n)
                continue
            mapping[item.strip()] = column.strip()
        if bad:
            raise forms.ValidationError(gettext("Line %(lines)s is not “data item=source column”.")
                                        % {"lines": ", ".join(map(str, bad))})
        return mapping

    def show_error(self, exc) -> None:
        """A service's field errors next to the fields; mapping.<item> on the mapping box, naming the item."""
        if not exc.errors:
            self.add_error(None, str(exc.detail))
        for error in exc.errors:
            message = str(error.message)
            if error.field.startswith("mapping."):
                self.add_error("mapping", f"{error.field[len('mapping.'):]}: {message}")
            elif error.field in self.fields:
                self.add_error(error.field, message)
            else:
                self.add_error(None, message)


# ---- the rule form --------------------------------------------------------------------------------------

# Which parameters each kind of rule takes, as form fields (name in the form, name in params).
RULE_PARAMS = {
    RuleKind.PATTERN: ("regex",),
    RuleKind.RANGE: ("min", "max"),
    RuleKind.CODE_TABLE: ("code_table",),
    RuleKind.ID_CONSISTENCY: ("birth", "sex"),
    RuleKind.REFERENCE: ("resource", "item"),
    RuleKind.CROSS_SOURCE: ("resource", "item", "key_local", "key_source"),
}


class RuleForm(forms.Form):
    """A resource's own rule. The parameter fields are named params_<name>; `service_data` keeps those the
    chosen kind takes, and the service's params.<name> errors come back next to them."""

    kind = _ServiceChoiceField(label=_("Kind of check"), choices=[("", "—")] + list(RuleKind.choices))
    items = forms.MultipleChoiceField(label=_("Data items"), required=False, widget=forms.SelectMultiple(
        attrs={"size": 4}), help_text=_("The items the rule reads (hold Ctrl to pick several)."))
    blocking = forms.BooleanField(label=_("Blocking: failing rows are quarantined"), required=False, initial=True)
    description = forms.CharField(label=_("Description"), max_length=200, required=False)
    params_regex = forms.CharField(label=_("Regular expression (pattern)"), max_length=500, required=False)
    params_min = forms.CharField(label=_("Minimum (range)"), max_length=40, required=False)
    params_max = forms.CharField(label=_("Maximum (range)"), max_length=40, required=False)
    params_code_table = forms.CharField(label=_("Code table (code table)"), max_length=40, required=False,
                                        help_text=_("e.g. GB/T 2261.1"))
    params_birth = forms.CharField(label=_("Birth date item (ID consistency)"), max_length=100, required=False)
    params_sex = forms.CharField(label=_("Sex item (ID consistency)"), max_length=100, required=False)
    params_resource = forms.CharField(label=_("Other resource's code (reference, authoritative source)"),
                                      max_length=40, required=False)
    params_item = forms.CharField(label=_("Its data item (reference, authoritative source)"), max_length=100,
                                  required=False)
    params_key_local = forms.CharField(label=_("Key item here (authoritative source)"), max_length=100,
                                       required=False)
    params_key_source = forms.CharField(label=_("Key item there (authoritative source)"), max_length=100,
                                        required=False)

    def __init__(self, *args, items: list[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["items"].choices = [(name, name) for name in items]

    def param_fields(self):
        return [self[name] for name in self.fields if name.startswith("params_")]

    def main_fields(self):
        return [self[name] for name in self.fields if not name.startswith("params_")]

    def service_data(self) -> dict:
        data = self.cleaned_data
        kind = data["kind"]
        params = {}
        wanted = RULE_PARAMS.get(kind, ())
        for name in wanted:
            value = (data.get(f"params_{name}") or "").strip()
            if name.startswith("key_"):
                continue
            if value:
                params[name] = value
        if kind == RuleKind.CROSS_SOURCE:
            key = [(data.get("params_key_local") or "").strip(), (data.get("params_key_source") or "").strip()]
            if any(key):
                params["key"] = key
        items = list(data["items"])
        if kind == RuleKind.ID_CONSISTENCY:
            # The checks take the ID item first, then the birth date and sex items they compare with.
            items += [params[k] for k in ("birth", "sex") if params.get(k) and params[k] not in items]
        return {"kind": kind, "items": items, "params": params, "blocking": data["blocking"],
                "description": data["description"]}

    def show_error(self, exc) -> None:
        if not exc.errors:
            self.add_error(None, str(exc.detail))
        for error in exc.errors:
            message = str(error.message)
            name = error.field.replace(".", "_", 1) if error.field.startswith("params.") else error.field
            if name == "params_key":
                name = "params_key_local"
            self.add_error(name if name in self.fields else None, message)


class SettingsForm(forms.Form):
    """The table's load settings; the service checks the ranges and names the field at fault."""

    max_failure_share = forms.CharField(label=_("Largest share of failing rows"), max_length=20, help_text=_(
        "0 to 1: a load with a larger share of rows failing a blocking rule is rejected whole (0.2 = 20%)."))
    max_count_change = forms.CharField(label=_("Largest row-count change on replace"), max_length=20, required=False,
                                       help_text=_("0 to 10: a replace load that changes the row count by more than "
                                                   "this share is rejected; empty for no check."))
    retain_snapshots = forms.CharField(label=_("Snapshots kept"), max_length=10,
                                       help_text=_("1 to 10000: older snapshots are dropped after each load."))

    def service_data(self) -> dict:
        data = {name: value.strip() for name, value in self.cleaned_data.items()}
        data["max_count_change"] = data["max_count_change"] or None
        return data


class RowsForm(forms.Form):
    """Which snapshot's rows to show (time travel)."""

    snapshot = forms.IntegerField(label=_("Snapshot"), required=False, min_value=0)
    limit = forms.IntegerField(label=_("Rows"), required=False, min_value=1, max_value=500, initial=20)
