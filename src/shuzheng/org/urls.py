from django.urls import path

from shuzheng.org import views

# Included from web/urls.py, so the names live in the "web" namespace (web:organizations, web:user, ...).
urlpatterns = [
    path("organizations/", views.organizations_view, name="organizations"),
    path("organizations/new/", views.organization_create_view, name="organization_create"),
    path("organizations/<str:code>/", views.organization_view, name="organization"),
    path("organizations/<str:code>/edit/", views.organization_edit_view, name="organization_edit"),
    path("users/", views.users_view, name="users"),
    path("users/new/", views.user_create_view, name="user_create"),
    path("users/<str:username>/", views.user_view, name="user"),
    path("users/<str:username>/edit/", views.user_edit_view, name="user_edit"),
    path("users/<str:username>/roles/", views.user_role_assign_view, name="user_role_assign"),
    path("users/<str:username>/roles/remove/", views.user_role_remove_view, name="user_role_remove"),
    path("users/<str:username>/unlock/", views.user_unlock_view, name="user_unlock"),
    path("users/<str:username>/two-factor/reset/", views.user_reset_two_factor_view, name="user_reset_two_factor"),
    path("account/password/", views.password_view, name="password"),
    path("systems/", views.systems_view, name="systems"),
    path("systems/new/", views.system_create_view, name="system_create"),
    path("systems/<str:code>/", views.system_view, name="system"),
    path("systems/<str:code>/keys/", views.key_create_view, name="key_create"),
    path("systems/<str:code>/keys/<uuid:key_id>/revoke/", views.key_revoke_view, name="key_revoke"),
]
