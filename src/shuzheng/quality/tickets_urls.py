from django.urls import path

from shuzheng.quality import tickets_views as views

# Included from web/urls.py, so the names live in the "web" namespace (web:tickets, web:ticket, ...).
urlpatterns = [
    path("tickets/", views.tickets_view, name="tickets"),
    path("tickets/new/", views.ticket_create_view, name="ticket_create"),
    path("tickets/<str:number>/", views.ticket_view, name="ticket"),
    path("tickets/<str:number>/comment/", views.comment_view, name="ticket_comment"),
    path("tickets/<str:number>/accept/", views.accept_view, name="ticket_accept"),
    path("tickets/<str:number>/resolve/", views.resolve_view, name="ticket_resolve"),
    path("tickets/<str:number>/reject/", views.reject_view, name="ticket_reject"),
    path("tickets/<str:number>/reopen/", views.reopen_view, name="ticket_reopen"),
]
