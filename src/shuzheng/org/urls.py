from django.urls import path

from shuzheng.org import views

urlpatterns = [
    path("organizations/", views.organizations_view, name="organizations"),
    path("users/", views.users_view, name="users"),
    path("systems/", views.systems_view, name="systems"),
]
