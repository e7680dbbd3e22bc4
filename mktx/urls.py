from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularSwaggerView

from automation.urls import router as automation_router
from campaigns.campaign_views import tracked_link
from campaigns.urls import router as campaigns_router
from contacts.urls import router as contacts_router
from mktx.accounts.urls import router as accounts_router
from mktx.api import views as api_views
from mktx.api.schema import CachedSpectacularAPIView
from mktx.iam import views as iam_views
from mktx.iam.forms import ThrottledAdminLoginForm

admin.site.login_form = ThrottledAdminLoginForm  # the API login's password-guessing limits (mktx/iam/login_guard.py)

mkt_x_patterns = [
    path("schema/", CachedSpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("postman-collection.json", api_views.PostmanCollectionView.as_view(), name="postman-collection"),
    *accounts_router.urls,
    *contacts_router.urls,
    *campaigns_router.urls,
    *automation_router.urls,
    path("", include("chatbot.urls")),
    path("", include("analytics.urls")),
    path("", include("webhooks_app.urls")),
]

urlpatterns = [
    path("api/v1/auth/login", iam_views.LoginView.as_view(), name="auth-login"),
    path("api/v1/auth/refresh", iam_views.RefreshView.as_view(), name="auth-refresh"),
    path("api/v1/mkt-x/", include(mkt_x_patterns)),
    path("admin", RedirectView.as_view(url="/admin/")),
    path("admin/", admin.site.urls),
    path("healthz", api_views.healthz, name="healthz"),
    path("readyz", api_views.readyz, name="readyz"),
    path("l/<str:token>", tracked_link, name="tracked-link"),
]

handler400 = "mktx.api.views.bad_request"
handler403 = "mktx.api.views.permission_denied"
handler404 = "mktx.api.views.not_found"
handler500 = "mktx.api.views.server_error"
