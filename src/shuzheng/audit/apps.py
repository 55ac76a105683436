from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "shuzheng.audit"
    label = "audit"
