"""The AI endpoints under /api/v1/mkt-x/ (mktx/urls.py includes `urlpatterns`; the conversation endpoints join it)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from chatbot.conversation_views import AIConversationViewSet
from chatbot.views import AISettingsViewSet, FAQViewSet

router = SimpleRouter(trailing_slash=False)
router.register("ai/faq", FAQViewSet, basename="ai-faq")
router.register("ai/conversations", AIConversationViewSet, basename="ai-conversation")

urlpatterns = [
    path("ai/settings", AISettingsViewSet.as_view({"get": "retrieve", "put": "update"}), name="ai-settings"),
    *router.urls,
]
