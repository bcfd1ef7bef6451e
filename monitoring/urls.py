from __future__ import annotations

from django.urls import include, path

from monitoring import views

urlpatterns = [
    path("", views.home, name="home"),
    path("api/v1/", include("monitoring.api.urls")),
]
