from django.urls import include, path

from shuzheng.api import api
from shuzheng.security.metrics import metrics_view

urlpatterns = [
    path("", include("shuzheng.sharing.gateway_urls")),
    path("api/v1/", api.urls),
    path("", include("shuzheng.catalog.interop_urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("metrics", metrics_view, name="metrics"),  # Prometheus; loopback and SHUZHENG_METRICS_ALLOW only
    path("", include("shuzheng.web.urls")),
]
