"""Who may do what: one Django permission per action, checked on every page and every API endpoint.

The roles (viewer, clinician, reviewer, admin) are groups holding these permissions (``clinic.roles``).
A page names its permission with ``@role_required``; an API view names one per HTTP method in
``required_permissions``, and ``RolePermission`` (DRF's default permission class) refuses a method that
names none, so a new endpoint is closed until someone decides who may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import BasePermission

NO_ROLE_MESSAGE = (
    "Your account has no role that allows this. Ask an administrator of this site to give you the "
    "viewer, clinician, reviewer or admin role."
)


def role_required(permission: str) -> Callable:
    """A page for signed-in users holding ``permission``: anonymous visitors are sent to sign in, others
    without it get 403."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def checked(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.user.has_perm(permission):
                raise PermissionDenied(NO_ROLE_MESSAGE)
            return view(request, *args, **kwargs)

        return login_required(checked)

    return decorator


class RolePermission(BasePermission):
    """The API's permission check: the view's ``required_permissions[method]`` (HEAD and OPTIONS as GET);
    a signed-in caller using a method the view does not implement gets DRF's 405."""

    message = NO_ROLE_MESSAGE

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
        required = getattr(view, "required_permissions", {}).get(method)
        if required is None:
            # A method the view does not answer gets DRF's 405 (nothing there to protect); one it answers
            # without naming a permission is refused.
            return not hasattr(view, request.method.lower())
        return user.has_perm(required)
