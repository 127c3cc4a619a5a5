"""The admin site's user pages: the admin role manages accounts and their roles, and only a superuser
makes a superuser or grants permissions outside the roles."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

# Fields only a superuser may change: otherwise an admin could give anyone (itself included) every right.
SUPERUSER_ONLY = ("is_superuser", "user_permissions")


class RoleUserAdmin(UserAdmin):
    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else fields + SUPERUSER_ONLY


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), RoleUserAdmin)
