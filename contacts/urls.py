from rest_framework.routers import SimpleRouter

from contacts.views.contacts import ContactViewSet
from contacts.views.conversations import ConversationViewSet

router = SimpleRouter(trailing_slash=False)
router.register("contacts", ContactViewSet, basename="contact")
router.register("conversations", ConversationViewSet, basename="conversation")
