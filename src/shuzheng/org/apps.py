from django.apps import AppConfig


class OrgConfig(AppConfig):
    name = "shuzheng.org"
    label = "org"
