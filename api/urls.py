from __future__ import annotations

from django.urls import include, path

from api import views
from intake.views import signature_create

app_name = "api"

urlpatterns = [
    path("batches/", views.BatchListApi.as_view(), name="batch-list"),
    path("batches/<str:identifier>/", views.BatchDetailApi.as_view(), name="batch-detail"),
    path("operators/", views.OperatorListApi.as_view(), name="operator-list"),
    path("operators/<str:operator_id>/", views.OperatorDetailApi.as_view(), name="operator-detail"),
    path("alerts/", views.AlertListApi.as_view(), name="alert-list"),
    path("alerts/<int:alert_id>/", views.AlertDetailApi.as_view(), name="alert-detail"),
    # Like the recovery actions: no trailing slash, and tolerant of one.
    path("alerts/<int:alert_id>/acknowledge", views.AlertAcknowledgeApi.as_view(), name="alert-acknowledge"),
    path("alerts/<int:alert_id>/acknowledge/", views.AlertAcknowledgeApi.as_view()),
    # Exactly as operators' software posts it (no trailing slash), and tolerant of one. Open to the network:
    # a plain Django view with its own checks, outside the API's authentication.
    path("signatures", signature_create, name="signature-create"),
    path("signatures/", signature_create),
    path("recovery/", include("api.recovery.urls")),
]
