from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import ReadOnlyPasswordHashField
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from mktx.iam.models import Merchant, User


class UserInline(admin.TabularInline):
    model = User
    fields = ("email", "name", "role", "is_active", "last_login")
    readonly_fields = ("email", "last_login")
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ("name", "id", "is_active", "user_count", "created_at")
    list_filter = ("is_active", "created_at")
    search_fields = ("name", "id")
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [UserInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Merchant]:
        return super().get_queryset(request).annotate(_user_count=Count("users"))

    @admin.display(description="users", ordering="_user_count")
    def user_count(self, obj: Any) -> int:
        return int(obj._user_count)


class UserCreationForm(forms.ModelForm):
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    class Meta:
        model = User
        fields = ("email", "name", "merchant", "role", "is_staff")

    def save(self, commit: bool = True) -> User:
        user: User = super().save(commit=False)
        user.set_password(self.cleaned_data["password"])
        if commit:
            user.save()
        return user


class UserChangeForm(forms.ModelForm):
    password = ReadOnlyPasswordHashField(label="Password")

    class Meta:
        model = User
        fields = (
            "email", "password", "name", "merchant", "role",
            "is_active", "is_staff", "is_superuser", "groups", "user_permissions",
        )  # fmt: skip


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    list_display = ("email", "name", "merchant", "role", "is_active", "is_staff", "last_login")
    list_filter = ("role", "is_active", "is_staff", "merchant")
    list_select_related = ("merchant",)
    search_fields = ("email", "name", "merchant__name")
    ordering = ("email",)
    readonly_fields = ("id", "last_login", "date_joined")
    autocomplete_fields = ("merchant",)
    fieldsets = (
        (None, {"fields": ("id", "email", "password", "name")}),
        ("Merchant", {"fields": ("merchant", "role")}),
        ("Back office", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "password", "name", "merchant", "role", "is_staff")}),
    )
    filter_horizontal = ("groups", "user_permissions")


admin.site.site_header = "mktx back office"
admin.site.site_title = "mktx back office"
admin.site.index_title = "Merchants, accounts and activity"
