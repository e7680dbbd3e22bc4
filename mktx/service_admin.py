"""Admin change forms that write through the services the API uses (ARCHITECTURE.md: admin actions and forms call
the same service as the views).

The admin saves nothing itself: a change form calls the service while it validates, so the service's refusal shows
as a form error and the admin's own save has nothing left to write. A service that refuses undoes its own writes in its
atomic block; one that succeeds while something else on the page is invalid (an inline row) is undone by the change
view, which rolls back its transaction whenever it answers with the form again."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import router, transaction
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from mktx.api.errors import ApiError


def _form_field(exc: ApiError, fields: dict[str, str]) -> str | None:
    """The form field an API error names (`segmentIds[2]` is `segments`), or None for the whole form."""
    named = str(exc.details.get("field", ""))
    for api_name, form_name in fields.items():
        if named == api_name or named.startswith((f"{api_name}.", f"{api_name}[")):
            return form_name
    return None


def _is_the_form_again(response: HttpResponse) -> bool:
    """Whether a change view's answer to a POST is its form re-rendered with errors, not a save's redirect (or the
    page a popup's save answers with)."""
    return isinstance(response, TemplateResponse) and "adminform" in (response.context_data or {})


class ServiceForm(forms.ModelForm):
    """A change form whose changed fields go, under their API names, to `write(changes)`: the service call."""

    api_names: dict[str, str] = {}  # form field -> API field

    def write(self, changes: dict[str, Any]) -> None:
        raise NotImplementedError

    def api_value(self, name: str, value: Any) -> Any:
        return value

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or self.cleaned_data
        if self.errors or self.instance._state.adding:
            return cleaned
        changes = {
            self.api_names[name]: self.api_value(name, cleaned.get(name))
            for name in self.changed_data
            if name in self.api_names
        }
        if changes:
            try:
                self.write(changes)
            except ApiError as exc:
                self.add_error(_form_field(exc, {v: k for k, v in self.api_names.items()}), exc.message)
        return cleaned


class ViewOnlyAdmin(admin.ModelAdmin):
    """Rows the admin shows and never adds, changes or deletes (their services write them)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ServiceAdmin(admin.ModelAdmin):
    """Saving is done by the form's service call: nothing is written here, not even the many-to-many fields."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Django's, which runs a POST in one atomic block, but rolled back when the answer is the form again: the
        service has written the change while the form validated, and the page is refused for another reason (an
        inline row, an error the form itself found after the service's call)."""
        if request.method in ("GET", "HEAD", "OPTIONS", "TRACE"):
            return super().changeform_view(request, object_id, form_url, extra_context)
        using = router.db_for_write(self.model)
        with transaction.atomic(using=using):  # the block Django's opens is nested in this one, as a savepoint
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if _is_the_form_again(response):
                transaction.set_rollback(True, using=using)
            return response

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created through the API, which owns the merchant and the checks

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj.refresh_from_db()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)
