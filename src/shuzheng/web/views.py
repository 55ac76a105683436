"""Sign-in, two-factor, home and preferences. Views parse forms and call services; the rules are in
org.services."""

import time

from django.contrib import messages
from django.contrib.auth import login as django_login
from django.contrib.auth import logout as django_logout
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from shuzheng.audit.models import AuditRecord
from shuzheng.core.errors import ServiceError
from shuzheng.org import services
from shuzheng.org.models import Organization, Region, User
from shuzheng.org.services import Actor, client_ip
from shuzheng.web.forms import CodeForm, LoginForm, show_service_error

PENDING = "sz_pending_2fa"
PENDING_SECONDS = 300


def _next_url(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse("web:home")


def _finish_sign_in(request, user, method: str):
    request.session.pop(PENDING, None)
    django_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    services.record_sign_in(user, client_ip(request), method)
    return HttpResponseRedirect(_next_url(request))


def _pending_user(request):
    pending = request.session.get(PENDING)
    if not pending or time.time() - pending["at"] > PENDING_SECONDS:
        request.session.pop(PENDING, None)
        return None, None
    return User.objects.filter(pk=pending["user"], is_active=True).first(), pending["step"]


def login_view(request):
    if request.user.is_authenticated:
        return redirect("web:home")
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            result = services.sign_in_password(form.cleaned_data["username"], form.cleaned_data["password"],
                                               client_ip(request))
        except ServiceError as exc:
            show_service_error(form, exc)
        else:
            if result.next_step == "done":
                return _finish_sign_in(request, result.user, "password")
            request.session.cycle_key()
            request.session[PENDING] = {"user": str(result.user.pk), "step": result.next_step, "at": time.time()}
            target = "web:two_factor" if result.next_step == "totp" else "web:two_factor_enrol"
            return redirect(reverse(target) + (f"?next={request.POST['next']}" if request.POST.get("next") else ""))
    return render(request, "web/login.html", {"form": form, "next": request.GET.get("next", "")})


def two_factor_view(request):
    user, step = _pending_user(request)
    if user is None or step != "totp":
        messages.info(request, _("Please sign in again."))
        return redirect("web:login")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.sign_in_totp(user.pk, form.cleaned_data["code"], client_ip(request))
        except ServiceError as exc:
            show_service_error(form, exc)
        else:
            return _finish_sign_in(request, user, "password+totp")
    return render(request, "web/two_factor.html", {"form": form, "next": request.GET.get("next", "")})


def two_factor_enrol_view(request):
    """Enrolment, both for a signed-in user who chooses it and for an administrator who must enrol before
    the first sign-in completes."""
    if request.user.is_authenticated:
        user, pending = request.user, False
    else:
        user, step = _pending_user(request)
        if user is None or step != "enrol":
            return redirect("web:login")
        pending = True
    if user.two_factor_enrolled:
        messages.info(request, _("Two-factor authentication is already set up."))
        return redirect("web:home")
    ip = client_ip(request)
    enrolment = services.two_factor_enrolment(user) if user.totp_secret else services.start_two_factor(user, ip)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.confirm_two_factor(user.pk, form.cleaned_data["code"], ip)
        except ServiceError as exc:
            show_service_error(form, exc)
        else:
            messages.success(request, _("Two-factor authentication is set up."))
            if pending:
                return _finish_sign_in(request, user, "password+totp-enrol")
            return redirect("web:home")
    return render(request, "web/two_factor_enrol.html",
                  {"form": form, "enrolment": enrolment, "required": pending, "next": request.GET.get("next", "")})


@require_POST
def logout_view(request):
    if request.user.is_authenticated:
        services.record_sign_out(request.user, client_ip(request))
    django_logout(request)
    messages.info(request, _("You have signed out."))
    return redirect("web:login")


@login_required
def home_view(request):
    actor = Actor.from_request(request)
    coverage = services.data_officer_coverage()
    counts = {
        "regions": Region.objects.count(),
        "towns": Region.objects.filter(level=Region.Level.TOWN).count(),
        "organizations": Organization.objects.count(),
        "departments": Organization.objects.filter(kind=Organization.Kind.DEPARTMENT).count(),
        "external": Organization.objects.filter(kind__in=Organization.EXTERNAL_KINDS).count(),
        "users": services.list_users(actor).count(),
        "systems": services.list_systems(actor).count(),
        "audit_records": AuditRecord.objects.count(),
    }
    return render(request, "web/home.html", {"counts": counts, "coverage": coverage, "me": request.user})


@require_POST
def large_text_view(request):
    enabled = request.POST.get("enabled") == "1"
    if request.user.is_authenticated:
        services.set_large_text(Actor.from_request(request), enabled)
    else:
        request.session["large_text"] = enabled
    return HttpResponseRedirect(_next_url(request))
