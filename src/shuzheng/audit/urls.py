from django.urls import path

from shuzheng.audit import views

# Included from web/urls.py: the names are web:audit, web:audit_export, web:audit_verify.
urlpatterns = [
    path("audit/", views.audit_view, name="audit"),
    path("audit/export.csv", views.export_view, name="audit_export"),
    path("audit/verify/", views.verify_view, name="audit_verify"),
]
