from django.apps import AppConfig


class SharingConfig(AppConfig):
    name = "shuzheng.sharing"
    label = "sharing"
