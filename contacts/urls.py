from rest_framework.routers import SimpleRouter

from contacts.views.contacts import ContactViewSet
from contacts.views.conversations import ConversationViewSet
from contacts.views.segments import SegmentViewSet

router = SimpleRouter(trailing_slash=False)
router.register("contacts", ContactViewSet, basename="contact")
router.register("conversations", ConversationViewSet, basename="conversation")
router.register("segments", SegmentViewSet, basename="segment")
