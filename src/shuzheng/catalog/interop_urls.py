"""The catalog's standard interfaces, at the paths other software expects them (top level, outside the web
UI's namespace): DCAT-AP 3 documents where CKAN's DCAT extension serves them, and CKAN's Action API."""

from django.urls import path

from shuzheng.catalog import ckan_views, dcat_views

urlpatterns = [
    # `/catalog` and `/dataset/<code>` negotiate the format from Accept; a suffix (.ttl, .rdf, .jsonld) fixes it.
    path("catalog", dcat_views.catalog, name="dcat_catalog"),
    path("catalog.<str:suffix>", dcat_views.catalog, name="dcat_catalog_as"),
    path("dataset/<str:code>", dcat_views.dataset, name="dcat_dataset"),
    path("api/3", ckan_views.api_version, name="ckan_version"),
    path("api/3/action/<str:action>", ckan_views.action, name="ckan_action"),
    # Where CKAN clients (ckanapi's RemoteCKAN) look unless told otherwise.
    path("api/action/<str:action>", ckan_views.action, name="ckan_action_unversioned"),
]
