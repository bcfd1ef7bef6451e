"""The dashboard's static side: vendored htmx/uPlot match the pinned packages, the web app serves them, no CDN."""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from controlplane.vendor_static import ROOT, VENDOR_DIR, VENDORED, main, vendor_check, vendor_copy
from dashboard.formatting import eth_display, percent_display, relative_display
from tests.factories import batch_create


def test_it_the_committed_vendored_files_match_the_pinned_packages() -> None:
    assert vendor_check() == []
    assert main(["--check"]) == 0


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of just what the vendoring reads and writes: package.json, the packages, the vendored files."""
    shutil.copy(ROOT / "package.json", tmp_path / "package.json")
    for package in {item.package for item in VENDORED}:
        shutil.copytree(ROOT / "node_modules" / package, tmp_path / "node_modules" / package)
    shutil.copytree(ROOT / VENDOR_DIR, tmp_path / VENDOR_DIR)
    return tmp_path


def test_it_the_check_catches_a_stale_copy_and_vendoring_repairs_it(tree: Path) -> None:
    copy = tree / VENDOR_DIR / "htmx" / "htmx.min.js"
    copy.write_bytes(copy.read_bytes() + b"\n// edited by hand")
    (tree / VENDOR_DIR / "uplot" / "uPlot.min.css").unlink()

    problems = vendor_check(root=tree)

    assert any("htmx/htmx.min.js differs" in p for p in problems)
    assert any("uplot/uPlot.min.css is missing" in p for p in problems)
    vendor_copy(root=tree)
    assert vendor_check(root=tree) == []


def test_it_the_check_catches_an_installed_version_other_than_the_pin(tree: Path) -> None:
    manifest = json.loads((tree / "package.json").read_text())
    manifest["dependencies"]["uplot"] = "1.0.0"
    (tree / "package.json").write_text(json.dumps(manifest))

    problems = vendor_check(root=tree)

    assert len(problems) == 1
    assert "package.json pins 1.0.0" in problems[0]
    with pytest.raises(ValueError, match=r"pins 1\.0\.0"):
        vendor_copy(root=tree)


@override_settings(DEBUG=False)
@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/static/dashboard/live.js", "javascript"),
        ("/static/dashboard/dashboard.css", "css"),
        ("/static/vendor/htmx/htmx.min.js", "javascript"),
        ("/static/vendor/uplot/uPlot.iife.min.js", "javascript"),
    ],
)
def test_it_the_web_app_serves_its_static_files_itself(client: Client, path: str, kind: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert kind in response["Content-Type"]
    assert b"".join(response.streaming_content)  # type: ignore[attr-defined]


@pytest.mark.django_db
@override_settings(PUBLIC_DASHBOARD=True)
def test_it_pages_load_nothing_from_elsewhere(client: Client) -> None:
    batch = batch_create(label="b")
    for page in ("/", "/batches/", f"/batches/{batch.identifier}/", "/operators/", "/recovery/", "/login/"):
        html = client.get(page).content.decode()
        sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
        assert sources, page
        assert all(s.startswith("/static/") or s.startswith("data:") for s in sources), (page, sources)


def test_it_numbers_are_formatted_for_people() -> None:
    assert eth_display(Decimal(32 * 10**18)) == "32.00"
    assert eth_display(1234567 * 10**16) == "12,345.67"
    assert eth_display(10**15) == "<0.01"
    assert eth_display(10**15, places=6) == "0.001"
    assert eth_display(None) == "—"
    assert percent_display(66.666) == "66.7%"
    assert percent_display(None) == "—"
    now = timezone.now()
    assert relative_display(now - timedelta(seconds=30), now=now) == "30 s ago"
    assert relative_display(now - timedelta(minutes=5), now=now) == "5 min ago"
    assert relative_display(now + timedelta(hours=3), now=now) == "in 3 h"
    assert relative_display(None) == "never"
