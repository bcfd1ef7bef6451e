from __future__ import annotations

from django.urls import include, path

from monitoring.api import views
from monitoring.intake.views import signature_create

app_name = "api"

urlpatterns = [
    path("batches/", views.BatchListApi.as_view(), name="batch-list"),
    path("batches/<str:identifier>/", views.BatchDetailApi.as_view(), name="batch-detail"),
    path("operators/", views.OperatorListApi.as_view(), name="operator-list"),
    path("operators/<str:operator_id>/", views.OperatorDetailApi.as_view(), name="operator-detail"),
    # Exactly as operators' software posts it (no trailing slash), and tolerant of one.
    path("signatures", signature_create, name="signature-create"),
    path("signatures/", signature_create),
    path("recovery/", include("recovery.api.urls")),
]
