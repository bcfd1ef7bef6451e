from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from controlplane.views import healthz
from monitoring.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("django-rq/", include("django_rq.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("", include("monitoring.urls")),
]

# Unknown URLs and crashes under /api/ answer JSON in the API's error shape.
handler404 = "controlplane.views.not_found"
handler500 = "controlplane.views.server_error"
