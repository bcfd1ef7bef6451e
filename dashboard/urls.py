"""Dashboard pages, mounted at the site root."""

from __future__ import annotations

from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("batches/", views.batch_list, name="batch-list"),
    path("batches/<str:identifier>/", views.batch_page, name="batch-detail"),
    path("operators/", views.operator_list, name="operator-list"),
    path("operators/<str:operator_id>/", views.operator_page, name="operator-detail"),
    path("recovery/", views.recovery, name="recovery"),
]
