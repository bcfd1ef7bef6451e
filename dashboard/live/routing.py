"""Websocket routes (mounted by controlplane.asgi behind the origin check and the session auth)."""

from __future__ import annotations

from django.urls import path, re_path

from dashboard.live.consumers import BatchConsumer, QuorumConsumer

websocket_urlpatterns = [
    path("ws/quorum/", QuorumConsumer.as_asgi()),
    # Any single path segment reaches the consumer, which closes with 4400 unless it is 0x + 64 lowercase hex:
    # a clear answer rather than a failed handshake.
    re_path(r"^ws/batches/(?P<identifier>[^/]+)/$", BatchConsumer.as_asgi()),
]
