from django.urls import path

from shuzheng.audit import views

urlpatterns = [
    path("audit/", views.audit_view, name="audit"),
]
