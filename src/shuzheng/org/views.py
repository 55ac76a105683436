"""Pages for organizations, users, roles, application systems and API keys. Views parse forms, call
org.services with the request's Actor and render; every rule and permission check is in the services.
`authz.allowed` is asked here only to decide which buttons to show."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from shuzheng.core.errors import ServiceError
from shuzheng.org import services
from shuzheng.org.forms import (
    KeyForm,
    OrganizationFilterForm,
    OrganizationForm,
    PasswordChangeForm,
    RoleForm,
    SystemFilterForm,
    SystemForm,
    UserCreateForm,
    UserEditForm,
    UserFilterForm,
)
from shuzheng.org.roles import Perm, Role
from shuzheng.org.services import Actor, authz
from shuzheng.web.pages import or_http_error, page_of, query_without_page, raise_http_error, show_form_error

def _orgs_for(actor: Actor, perm: str):
    """Organizations the actor may pick for `perm` (for select boxes; the service still checks)."""
    ids = authz.org_ids(actor, perm)
    orgs = services.list_organizations().order_by("name")
    return orgs if ids is None else orgs.filter(id__in=ids)


# ---- organizations ----------------------------------------------------------------------------------


@login_required
def organizations_view(request):
    actor = Actor.from_request(request)
    form = OrganizationFilterForm(request.GET or None)
    q = kind = ""
    if form.is_valid():
        q, kind = form.cleaned_data["q"].strip(), form.cleaned_data["kind"]
    page = page_of(request, services.list_organizations(q=q, kind=kind))
    return render(request, "org/organizations.html", {
        "form": form, "page": page, "query": query_without_page(request),
        "can_manage": authz.allowed(actor, Perm.ORG_MANAGE),
    })


@login_required
def organization_view(request, code):
    actor = Actor.from_request(request)
    org = or_http_error(services.find_organization, code)
    context = {
        "org": org,
        "children": services.list_organizations().filter(parent=org).order_by("code"),
        "users_count": services.list_users(actor, org_code=org.code).count(),
        "systems_count": services.list_systems(actor, org_code=org.code).count(),
        "can_see_users": authz.allowed(actor, Perm.USER_VIEW, org),
        "can_see_systems": authz.allowed(actor, Perm.SYSTEM_VIEW, org),
        "can_manage": authz.allowed(actor, Perm.ORG_MANAGE),
    }
    return render(request, "org/organization_detail.html", context)


def _org_data(cleaned: dict) -> dict:
    data = {k: (v.strip() if isinstance(v, str) else v) for k, v in cleaned.items()}
    data["parent"] = data.get("parent") or None
    return data


@login_required
def organization_create_view(request):
    actor = Actor.from_request(request)
    if not authz.allowed(actor, Perm.ORG_MANAGE):
        raise PermissionDenied
    form = OrganizationForm(request.POST or None, organizations=services.list_organizations().order_by("name"))
    if request.method == "POST" and form.is_valid():
        try:
            org = services.create_organization(actor, _org_data(form.cleaned_data))
        except ServiceError as exc:
            show_form_error(form, exc)
        else:
            messages.success(request, _("Organization %(name)s created.") % {"name": org.name})
            return redirect("web:organization", code=org.code)
    return render(request, "org/organization_form.html", {"form": form, "org": None})


@login_required
def organization_edit_view(request, code):
    actor = Actor.from_request(request)
    if not authz.allowed(actor, Perm.ORG_MANAGE):
        raise PermissionDenied
    org = or_http_error(services.find_organization, code)
    initial = {
        "name": org.name, "short_name": org.short_name, "name_en": org.name_en, "kind": org.kind,
        "parent": org.parent.code if org.parent_id else "", "region": org.region.code, "is_active": org.is_active,
    }
    others = services.list_organizations().exclude(pk=org.pk).order_by("name")
    form = OrganizationForm(request.POST or None, initial=initial, organizations=others, editing=True)
    if request.method == "POST" and form.is_valid():
        try:
            org = services.update_organization(actor, code, _org_data(form.cleaned_data))
        except ServiceError as exc:
            show_form_error(form, exc)
        else:
            messages.success(request, _("Organization %(name)s saved.") % {"name": org.name})
            return redirect("web:organization", code=org.code)
    return render(request, "org/organization_form.html", {"form": form, "org": org})


# ---- users ------------------------------------------------------------------------------------------


@login_required
def users_view(request):
    actor = Actor.from_request(request)
    form = UserFilterForm(request.GET or None, organizations=_orgs_for(actor, Perm.USER_VIEW))
    q = org_code = role = ""
    if form.is_valid():
        q, org_code, role = form.cleaned_data["q"].strip(), form.cleaned_data["organization"], form.cleaned_data["role"]
    users = services.list_users(actor, org_code=org_code, q=q, role=role)
    return render(request, "org/users.html", {
        "form": form, "page": page_of(request, users), "query": query_without_page(request),
        "can_create": authz.allowed(actor, Perm.USER_MANAGE),
    })


def _get_user(actor: Actor, username: str):
    try:
        return services.get_user(actor, username)
    except ServiceError as exc:
        raise_http_error(exc)
        raise


def _userpage_of(request, actor: Actor, user, role_form=None, status=200):
    held = [r.role for r in user.roles.all()]
    org = user.organization
    is_me = user.pk == request.user.pk
    can_assign = authz.allowed(actor, Perm.ROLE_ASSIGN, org) and not is_me
    can_unlock = authz.allowed(actor, Perm.USER_UNLOCK, org)
    return render(request, "org/user_detail.html", {
        "u": user,
        "is_me": is_me,
        "roles": [{"value": r, "label": Role(r).label} for r in held if r in Role.values],
        "locked": user.is_locked(),
        "can_edit": authz.allowed(actor, Perm.USER_MANAGE, org),
        "can_assign": can_assign,
        "can_unlock": can_unlock,
        "role_form": role_form or (RoleForm(held=held) if can_assign else None),
    }, status=status)


@login_required
def user_view(request, username):
    actor = Actor.from_request(request)
    return _userpage_of(request, actor, _get_user(actor, username))


@login_required
def user_create_view(request):
    actor = Actor.from_request(request)
    if not authz.allowed(actor, Perm.USER_MANAGE):
        raise PermissionDenied
    form = UserCreateForm(request.POST or None, organizations=_orgs_for(actor, Perm.USER_MANAGE))
    if request.method == "POST" and form.is_valid():
        try:
            user = services.create_user(actor, form.cleaned_data)
        except ServiceError as exc:
            show_form_error(form, exc)
        else:
            messages.success(request, _("User %(name)s created.") % {"name": user.username})
            return redirect("web:user", username=user.username)
    return render(request, "org/user_form.html", {"form": form, "u": None})


@login_required
def user_edit_view(request, username):
    actor = Actor.from_request(request)
    user = _get_user(actor, username)
    if not authz.allowed(actor, Perm.USER_MANAGE, user.organization):
        raise PermissionDenied
    initial = {"full_name": user.full_name, "email": user.email, "mobile": user.mobile,
               "organization": user.organization.code, "is_active": user.is_active}
    form = UserEditForm(request.POST or None, initial=initial, organizations=_orgs_for(actor, Perm.USER_MANAGE))
    if request.method == "POST" and form.is_valid():
        try:
            user = services.update_user(actor, username, form.cleaned_data)
        except ServiceError as exc:
            show_form_error(form, exc)
        else:
            messages.success(request, _("User %(name)s saved.") % {"name": user.username})
            return redirect("web:user", username=user.username)
    return render(request, "org/user_form.html", {"form": form, "u": user})


@login_required
@require_POST
def user_role_assign_view(request, username):
    actor = Actor.from_request(request)
    user = _get_user(actor, username)
    form = RoleForm(request.POST, held=[r.role for r in user.roles.all()])
    # The service judges the role; the form's choices only list what is worth offering.
    form.fields["role"].choices = [("", "—")] + list(Role.choices)
    if form.is_valid():
        role = form.cleaned_data["role"]
        try:
            services.assign_role(actor, username, role)
        except ServiceError as exc:
            show_form_error(form, exc)
        else:
            messages.success(request, _("Role %(role)s assigned to %(name)s.")
                             % {"role": Role(role).label, "name": username})
            return redirect("web:user", username=username)
    return _userpage_of(request, actor, _get_user(actor, username), role_form=form)


def _button_action(request, call, success, target):
    """A POST button (remove a role, unlock, reset two-factor, revoke a key): run the service, report the
    outcome as a message and go back to the page the button was on. `success` gets the service's result."""
    try:
        result = call(Actor.from_request(request))
    except ServiceError as exc:
        raise_http_error(exc)
        messages.error(request, str(exc.detail))
    else:
        messages.success(request, success(result))
    return target


@login_required
@require_POST
def user_role_remove_view(request, username):
    role = request.POST.get("role", "")
    label = Role(role).label if role in Role.values else role
    return _button_action(
        request, lambda actor: services.remove_role(actor, username, role),
        lambda _r: _("Role %(role)s removed from %(name)s.") % {"role": label, "name": username},
        redirect("web:user", username=username))


@login_required
@require_POST
def user_unlock_view(request, username):
    return _button_action(
        request, lambda actor: services.unlock_user(actor, username),
        lambda _r: _("%(name)s is unlocked.") % {"name": username},
        redirect("web:user", username=username))


@login_required
@require_POST
def user_reset_two_factor_view(request, username):
    return _button_action(
        request, lambda actor: services.reset_two_factor(actor, username),
        lambda _r: _("Two-factor authentication of %(name)s is reset; they set it up again at "
                     "their next sign-in.") % {"name": username},
        redirect("web:user", username=username))


@login_required
def password_view(request):
    actor = Actor.from_request(request)
    form = PasswordChangeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.set_password(actor, request.user.username, form.cleaned_data["new_password"],
                                  old_password=form.cleaned_data["old_password"])
        except ServiceError as exc:
            show_form_error(form, exc)
        else:
            request.user.refresh_from_db()
            update_session_auth_hash(request, request.user)  # stay signed in on this device
            messages.success(request, _("Your password is changed."))
            return redirect("web:user", username=request.user.username)
    return render(request, "org/password.html", {"form": form})


# ---- application systems and API keys -----------------------------------------------------------------


@login_required
def systems_view(request):
    actor = Actor.from_request(request)
    form = SystemFilterForm(request.GET or None, organizations=_orgs_for(actor, Perm.SYSTEM_VIEW))
    org_code = form.cleaned_data["organization"] if form.is_valid() else ""
    systems = services.list_systems(actor, org_code=org_code).order_by("code")
    return render(request, "org/systems.html", {
        "form": form, "page": page_of(request, systems), "query": query_without_page(request),
        "can_create": authz.allowed(actor, Perm.SYSTEM_MANAGE),
    })


@login_required
def system_create_view(request):
    actor = Actor.from_request(request)
    if not authz.allowed(actor, Perm.SYSTEM_MANAGE):
        raise PermissionDenied
    orgs = _orgs_for(actor, Perm.SYSTEM_MANAGE)
    form = SystemForm(request.POST or None, organizations=orgs,
                      initial={"organization": actor.org_code})
    if request.method == "POST" and form.is_valid():
        try:
            system = services.create_system(actor, form.cleaned_data)
        except ServiceError as exc:
            show_form_error(form, exc)
        else:
            messages.success(request, _("Application system %(name)s registered.") % {"name": system.name})
            return redirect("web:system", code=system.code)
    return render(request, "org/system_form.html", {"form": form})


def _systempage_of(request, actor: Actor, code: str, key_form=None, new_key=None, status=200):
    try:
        system = services.get_system(actor, code)
        keys = list(services.list_keys(actor, code))
    except ServiceError as exc:
        raise_http_error(exc)
        raise
    org = system.organization
    can_manage = authz.allowed(actor, Perm.SYSTEM_MANAGE, org)
    response = render(request, "org/system_detail.html", {
        "system": system,
        "keys": keys,
        "can_manage": can_manage,
        "can_revoke": can_manage or authz.allowed(actor, Perm.APIKEY_REVOKE, org),
        "key_form": key_form or (KeyForm() if can_manage and system.is_active else None),
        "new_key": new_key,
    }, status=status)
    return response


@login_required
def system_view(request, code):
    return _systempage_of(request, Actor.from_request(request), code)


@never_cache
@login_required
@require_POST
def key_create_view(request, code):
    """Shows the new key once, in this response only: it is neither stored nor put in the session."""
    actor = Actor.from_request(request)
    form = KeyForm(request.POST)
    if form.is_valid():
        try:
            key, raw = services.create_api_key(actor, code, form.cleaned_data["label"], form.cleaned_data["days"])
        except ServiceError as exc:
            show_form_error(form, exc)
        else:
            return _systempage_of(request, actor, code, new_key={"key": key, "raw": raw})
    return _systempage_of(request, actor, code, key_form=form)


@login_required
@require_POST
def key_revoke_view(request, code, key_id):
    return _button_action(
        request, lambda actor: services.revoke_api_key(actor, key_id),
        lambda key: _("Key %(prefix)s… is revoked.") % {"prefix": key.prefix},
        redirect(reverse("web:system", kwargs={"code": code})))
