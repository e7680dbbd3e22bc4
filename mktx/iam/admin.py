from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import ReadOnlyPasswordHashField
from django.contrib.auth.password_validation import password_validators_help_text_html, validate_password
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from mktx.iam.models import Merchant, User, normalize_email


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


class NormalisedEmailMixin(forms.ModelForm):
    """Emails are stored as login looks them up (mktx.iam.models.normalize_email), so `Ann@X` and `ann@x` are one
    user: the admin must not create the other one, which could never log in."""

    def clean_email(self) -> str:
        email = normalize_email(self.cleaned_data["email"])
        if User.objects.filter(email__iexact=email).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("A user with this email already exists.")
        return email


class UserCreationForm(NormalisedEmailMixin):
    password = forms.CharField(widget=forms.PasswordInput, strip=False, help_text=password_validators_help_text_html())

    class Meta:
        model = User
        fields = ("email", "name", "merchant", "role", "is_staff")

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or self.cleaned_data
        password = cleaned.get("password")
        if password:
            try:  # the validators the API and create_merchant apply (AUTH_PASSWORD_VALIDATORS)
                validate_password(password, User(email=cleaned.get("email", ""), name=cleaned.get("name", "")))
            except ValidationError as exc:
                self.add_error("password", exc)
        return cleaned

    def save(self, commit: bool = True) -> User:
        user: User = super().save(commit=False)
        user.set_password(self.cleaned_data["password"])
        if commit:
            user.save()
        return user


class UserChangeForm(NormalisedEmailMixin):
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
