from django.apps import AppConfig


class WarehouseConfig(AppConfig):
    name = "shuzheng.warehouse"
    label = "warehouse"
