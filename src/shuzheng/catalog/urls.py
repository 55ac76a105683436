from django.urls import path

from shuzheng.catalog import views

# Included from web/urls.py, so the names live in the "web" namespace (web:catalog, web:resource, ...).
# Resource codes contain "/"; in these URLs it is written "-" (catalog.templatetags.catalog.resource_url).
urlpatterns = [
    path("catalog/", views.catalog_view, name="catalog"),
    path("catalog/new/", views.resource_create_view, name="resource_create"),
    path("catalog/import/", views.import_view, name="catalog_import"),
    path("catalog/work/", views.work_view, name="catalog_work"),
    path("catalog/<str:code>/", views.resource_view, name="resource"),
    path("catalog/<str:code>/edit/", views.resource_edit_view, name="resource_edit"),
    path("catalog/<str:code>/diff/", views.diff_view, name="resource_diff"),
    path("catalog/<str:code>/submit/", views.submit_view, name="resource_submit"),
    path("catalog/<str:code>/review/", views.review_view, name="resource_review"),
    path("catalog/<str:code>/publish/", views.publish_view, name="resource_publish"),
    path("catalog/<str:code>/revise/", views.revise_view, name="resource_revise"),
    path("catalog/<str:code>/deprecate/", views.deprecate_view, name="resource_deprecate"),
    path("catalog/<str:code>/mount/", views.mount_view, name="resource_mount"),
    path("catalog/<str:code>/unmount/", views.unmount_view, name="resource_unmount"),
    path("standards/", views.standards_view, name="standards"),
    path("standards/elements/", views.elements_view, name="elements"),
    path("standards/elements/new/", views.element_create_view, name="element_create"),
    path("standards/elements/<str:identifier>/", views.element_view, name="element"),
    path("standards/elements/<str:identifier>/edit/", views.element_edit_view, name="element_edit"),
    path("standards/code-tables/", views.code_tables_view, name="code_tables"),
    path("standards/code-tables/new/", views.code_table_create_view, name="code_table_create"),
    path("standards/code-tables/<str:code>/", views.code_table_view, name="code_table"),
    path("standards/code-tables/<str:code>/edit/", views.code_table_edit_view, name="code_table_edit"),
    path("standards/sources/", views.sources_view, name="sources"),
]
