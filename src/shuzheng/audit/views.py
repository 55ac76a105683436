from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from shuzheng.audit import services
from shuzheng.org.services import Actor


@login_required
def audit_view(request):
    records = services.search(Actor.from_request(request), services.AuditQuery())[:100]
    return render(request, "audit/audit.html", {"records": records})
