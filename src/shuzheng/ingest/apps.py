from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "shuzheng.ingest"
    label = "ingest"
