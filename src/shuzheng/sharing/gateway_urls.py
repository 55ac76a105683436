"""The gateway's URLs (top level: they must not sit behind the web UI's namespace or middleware)."""

from django.conf import settings
from django.urls import path

from shuzheng.sharing import gateway_views as g

urlpatterns = [
    path("api/v1/share/sql", g.sql, name="share_sql"),
    path("api/v1/share/exports/download/<str:token>", g.export_download, name="share_export_download"),
    path("api/v1/share/exports/<str:export_id>", g.export_status, name="share_export"),
    path("api/v1/share/<str:code>/verify", g.verify, name="share_verify"),
    path("api/v1/share/<str:code>/records", g.records, name="share_records"),
    path("api/v1/share/<str:code>/exports", g.export_create, name="share_export_create"),
]
if settings.BENCH_BARE:
    urlpatterns.append(path("api/v1/share/_bare/<str:code>/verify", g.bare_verify))
