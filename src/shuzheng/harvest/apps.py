from django.apps import AppConfig


class HarvestConfig(AppConfig):
    name = "shuzheng.harvest"
    label = "harvest"
