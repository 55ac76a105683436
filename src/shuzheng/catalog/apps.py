from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "shuzheng.catalog"
    label = "catalog"
