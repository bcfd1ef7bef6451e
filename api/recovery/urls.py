"""Mounted at /api/v1/recovery/. Paths as documented (no trailing slash), and tolerant of one."""

from __future__ import annotations

from django.urls import path

from api.recovery import views

app_name = "recovery"

urlpatterns = [
    path("replays", views.ReplayCreateApi.as_view(), name="replay-create"),
    path("replays/", views.ReplayCreateApi.as_view()),
    path("catchups", views.CatchupCreateApi.as_view(), name="catchup-create"),
    path("catchups/", views.CatchupCreateApi.as_view()),
    path("responses", views.ResponseCreateApi.as_view(), name="response-create"),
    path("responses/", views.ResponseCreateApi.as_view()),
    path("runs", views.RunListApi.as_view(), name="run-list"),
    path("runs/", views.RunListApi.as_view()),
    path("runs/<str:run_id>", views.RunDetailApi.as_view(), name="run-detail"),
    path("runs/<str:run_id>/", views.RunDetailApi.as_view()),
]
