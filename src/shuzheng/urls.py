from django.urls import include, path

from shuzheng.api import api

urlpatterns = [
    path("", include("shuzheng.sharing.gateway_urls")),
    path("api/v1/", api.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("shuzheng.web.urls")),
]
