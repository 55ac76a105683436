from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from shuzheng.org import services
from shuzheng.org.services import Actor


@login_required
def organizations_view(request):
    return render(request, "org/organizations.html", {"organizations": services.list_organizations()})


@login_required
def users_view(request):
    return render(request, "org/users.html", {"users": services.list_users(Actor.from_request(request))})


@login_required
def systems_view(request):
    return render(request, "org/systems.html", {"systems": services.list_systems(Actor.from_request(request))})
