"""The analytics endpoints under /api/v1/mkt-x/ (mktx/urls.py includes `urlpatterns`)."""

from django.urls import path

from analytics import views

urlpatterns = [
    path("analytics/overview", views.OverviewView.as_view(), name="analytics-overview"),
    path("analytics/contacts", views.ContactsView.as_view(), name="analytics-contacts"),
    path("analytics/conversations", views.ConversationsView.as_view(), name="analytics-conversations"),
    path("analytics/campaigns", views.CampaignsView.as_view(), name="analytics-campaigns"),
    path("analytics/automation", views.AutomationView.as_view(), name="analytics-automation"),
]
