from django.urls import path

from shuzheng.security import views

urlpatterns = [
    path("security/", views.dashboard_view, name="security"),
    path("security/scan/", views.scan_view, name="security_scan"),
    path("security/alerts/<int:alert_id>/", views.alert_view, name="security_alert"),
    path("security/alerts/<int:alert_id>/handle/", views.handle_view, name="security_handle"),
]
