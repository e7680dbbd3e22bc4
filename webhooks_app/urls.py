from django.urls import path

from webhooks_app import views

urlpatterns = [
    path("webhooks/twitter", views.twitter_webhook, name="webhooks-twitter"),
    path("webhooks/verify", views.crc_verify, name="webhooks-verify"),
]
