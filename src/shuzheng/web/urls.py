from django.urls import include, path

from shuzheng.web import views

app_name = "web"

urlpatterns = [
    path("", views.home_view, name="home"),
    path("login/", views.login_view, name="login"),
    path("login/two-factor/", views.two_factor_view, name="two_factor"),
    path("two-factor/enrol/", views.two_factor_enrol_view, name="two_factor_enrol"),
    path("logout/", views.logout_view, name="logout"),
    path("preferences/large-text/", views.large_text_view, name="large_text"),
    path("", include("shuzheng.org.urls")),
    path("", include("shuzheng.audit.urls")),
    path("", include("shuzheng.catalog.urls")),
    path("", include("shuzheng.ingest.urls")),
    path("", include("shuzheng.quality.tickets_urls")),
    path("", include("shuzheng.sharing.urls")),
    path("", include("shuzheng.security.urls")),
    path("", include("shuzheng.harvest.urls")),
]
