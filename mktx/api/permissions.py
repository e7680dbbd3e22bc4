"""Roles (CONTRACT.md): agents work the inbox and read everything else; owners and admins also manage."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

OWNER, ADMIN, AGENT = "owner", "admin", "agent"
ALL_ROLES = frozenset({OWNER, ADMIN, AGENT})
MANAGER_ROLES = frozenset({OWNER, ADMIN})


class IsMerchantMember(BasePermission):
    """The caller is authenticated and acts for a merchant."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return getattr(request.user, "merchant_id", None) is not None


class RolePermission(BasePermission):
    """Reads are open to every role; writes to `view.write_roles` (owners and admins unless the view says more).

    A view may allow some actions to more roles with `action_roles = {"preview": ALL_ROLES}`.
    """

    message = "Your role does not allow this action"

    def has_permission(self, request: Request, view: Any) -> bool:
        role = getattr(request.user, "role", None)
        action = getattr(view, "action", None)
        action_roles = getattr(view, "action_roles", {})
        if action in action_roles:
            return role in action_roles[action]
        if request.method in SAFE_METHODS:
            return role in ALL_ROLES
        return role in getattr(view, "write_roles", MANAGER_ROLES)
