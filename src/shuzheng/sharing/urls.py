from django.urls import path

from shuzheng.sharing import views

urlpatterns = [
    path("sharing/", views.home_view, name="sharing"),
    path("sharing/apply/<str:code>/", views.apply_view, name="sharing_apply"),
    path("sharing/applications/<str:number>/", views.application_view, name="sharing_application"),
    path("sharing/grants/<uuid:grant_id>/", views.grant_view, name="sharing_grant"),
    path("sharing/usage/", views.usage_view, name="sharing_usage"),
]
