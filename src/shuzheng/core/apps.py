from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "shuzheng.core"
    label = "core"
