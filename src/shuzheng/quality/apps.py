from django.apps import AppConfig


class QualityConfig(AppConfig):
    name = "shuzheng.quality"
    label = "quality"
