"""Security state: data keys and their rotations (keys.py, fieldcrypt.py)."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class KeyState(models.TextChoices):
    ACTIVE = "active", _("Active")
    RETIRING = "retiring", _("Retiring")  # replaced; still decrypts snapshots written under it
    RETIRED = "retired", _("Retired")  # no retained snapshot uses it; its material is destroyed


class DataKey(models.Model):
    """One resource's data key: an SM4 key for the values and an HMAC-SM3 key for their blind index, wrapped
    (SM4-GCM) by the master key. Its integer id is written into every ciphertext, so values written under
    different keys can sit side by side while a rotation runs."""

    resource = models.ForeignKey("catalog.Resource", on_delete=models.PROTECT, related_name="data_keys")
    state = models.CharField(max_length=10, choices=KeyState.choices, default=KeyState.ACTIVE)
    wrapped = models.BinaryField(null=True)  # NULL once retired
    master = models.CharField(max_length=16)  # fingerprint of the master key that wraps it
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["resource"], condition=models.Q(state="active"),
                                               name="one_active_data_key")]


class Rotation(models.Model):
    """A re-encryption of one resource's warehouse table under a new data key. A rotation that did not
    finish (the process died) is resumed by the next `keys rotate`: the new key is kept, the table is
    rewritten again from its current snapshot."""

    class State(models.TextChoices):
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    resource = models.ForeignKey("catalog.Resource", on_delete=models.PROTECT, related_name="+")
    old_key = models.ForeignKey(DataKey, null=True, on_delete=models.PROTECT, related_name="+")
    new_key = models.ForeignKey(DataKey, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=8, choices=State.choices, default=State.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    snapshot_id = models.BigIntegerField(null=True, blank=True)
    rows = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
