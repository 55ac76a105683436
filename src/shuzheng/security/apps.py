from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "shuzheng.security"
    label = "security"
