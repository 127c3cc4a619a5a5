"""The admin site's user pages: the admin role manages accounts and their roles; only a superuser makes a
superuser, grants permissions outside the roles, or changes a superuser's account."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

# Fields only a superuser may change: otherwise an admin could give anyone (itself included) every right.
SUPERUSER_ONLY = ("is_superuser", "user_permissions")


class RoleUserAdmin(UserAdmin):
    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else fields + SUPERUSER_ONLY

    def has_change_permission(self, request, obj=None) -> bool:
        # Nor may an admin edit a superuser (its password included) and so become one.
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), RoleUserAdmin)
