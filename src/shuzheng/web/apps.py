from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "shuzheng.web"
    label = "web"
