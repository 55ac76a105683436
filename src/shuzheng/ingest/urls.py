from django.urls import path

from shuzheng.ingest import views

# Included from web/urls.py, so the names live in the "web" namespace (web:data, web:load, ...).
# Resource codes contain "/"; in these URLs it is written "-" (catalog.templatetags.catalog.url_code).
urlpatterns = [
    path("data/", views.tables_view, name="data_tables"),
    path("data/overdue/", views.overdue_view, name="data_overdue"),
    path("data/loads/<uuid:load_id>/", views.load_view, name="load"),
    path("data/loads/<uuid:load_id>/quarantine.<str:fmt>", views.quarantine_view, name="load_quarantine"),
    path("data/<str:code>/", views.data_view, name="data"),
    path("data/<str:code>/upload/", views.upload_view, name="data_upload"),
    path("data/<str:code>/rows/", views.rows_view, name="data_rows"),
    path("data/<str:code>/settings/", views.settings_view, name="data_settings"),
    path("data/<str:code>/rules/", views.rule_create_view, name="data_rules"),
    path("data/<str:code>/rules/<uuid:rule_id>/active/", views.rule_active_view, name="data_rule_active"),
]
