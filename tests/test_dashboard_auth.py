"""Dashboard auth: login required unless PUBLIC_DASHBOARD, login/logout pages, and `make run`'s staff account."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from devnet.management.commands.runstack import STAFF_USERNAME, staff_account_ensure
from tests.factories import batch_create, operator_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def pages() -> list[str]:
    batch = batch_create(label="b")
    operator = operator_create(label="o", stake=10**18)
    return [
        "/",
        "/batches/",
        f"/batches/{batch.identifier}/",
        "/operators/",
        f"/operators/{operator.operator_id}/",
        "/recovery/",
    ]


@override_settings(PUBLIC_DASHBOARD=False)
def test_it_every_page_sends_a_stranger_to_the_login_page(client: Client, pages: list[str]) -> None:
    for page in pages:
        response = client.get(page + "?x=1")
        assert response.status_code == 302, page
        assert response["Location"].startswith("/login/?next="), page
        assert page in response["Location"] or page == "/", page


@override_settings(PUBLIC_DASHBOARD=True)
def test_it_a_public_dashboard_shows_every_page_without_login_and_without_buttons(
    client: Client, pages: list[str]
) -> None:
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        assert 'data-testid="recovery-dry-run"' not in html, page
        assert "Log in" in html


def test_it_logging_in_leads_back_to_the_page_asked_for_and_logging_out_leaves(client: Client) -> None:
    get_user_model().objects.create_user("carol", password="correct horse battery")

    form = client.get("/login/?next=/operators/")
    assert form.status_code == 200
    assert 'autocomplete="current-password"' in form.content.decode()
    wrong = client.post("/login/", {"username": "carol", "password": "nope", "next": "/operators/"})
    assert "did not match" in wrong.content.decode()
    right = client.post(
        "/login/", {"username": "carol", "password": "correct horse battery", "next": "/operators/"}
    )
    assert right.status_code == 302
    assert right["Location"] == "/operators/"
    assert client.get("/operators/").status_code == 200
    assert "carol" in client.get("/").content.decode()

    out = client.post("/logout/")
    assert out.status_code == 302
    assert out["Location"] == "/login/"
    assert client.get("/").status_code == 302


def test_it_a_logged_in_user_is_not_shown_the_login_form_again(client: Client) -> None:
    client.force_login(get_user_model().objects.create_user("dave", password="x"))

    response = client.get("/login/")

    assert response.status_code == 302
    assert response["Location"] == "/"


def test_it_make_run_creates_the_staff_account_once_with_a_random_password(client: Client) -> None:
    first = staff_account_ensure()
    second = staff_account_ensure()

    assert first is not None
    assert len(first) >= 20
    assert second is None
    user = get_user_model().objects.get(username=STAFF_USERNAME)
    assert user.is_staff
    assert user.check_password(first)
    assert client.login(username=STAFF_USERNAME, password=first)
    assert 'class="badge badge-staff"' in client.get("/").content.decode()
