from django.urls import path

from shuzheng.harvest import views

urlpatterns = [
    path("harvest/", views.sources_view, name="harvest"),
    path("harvest/new/", views.create_view, name="harvest_create"),
    path("harvest/<str:name>/run/", views.run_view, name="harvest_run"),
]
