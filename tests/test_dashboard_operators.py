"""The operator pages: the list (state, stake share, last seen, missed batches) and one operator's uptime."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from dashboard.operator_selectors import uptime_segments
from intake.models import Signature, SignatureStatus
from ledger.models import Batch, Operator
from liveness.models import OperatorLiveness, OperatorStateChange
from recovery.models import RecoveryKind, RecoveryTask
from tests.factories import ETH, batch_create, hex32, operator_create

pytestmark = pytest.mark.django_db


def signature_create(
    *, batch: Batch, operator: Operator, status: str = SignatureStatus.VERIFIED
) -> Signature:
    return Signature.objects.create(
        batch_identifier=batch.identifier,
        batch_merkle_root=batch.merkle_root,
        sender_address=batch.sender,
        operator_id=operator.operator_id,
        signature_x=hex32(f"sx-{batch.identifier}-{operator.operator_id}"),
        signature_y=hex32(f"sy-{batch.identifier}-{operator.operator_id}"),
        status=status,
    )


def rows(html: str) -> list[tuple[str, str]]:
    return re.findall(r'data-testid="operator-row" data-operator-id="(0x\w+)" data-state="(\w+)"', html)


@pytest.fixture
def user_client(django_user_model: type[User]) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user("viewer", password="x"))
    return client


@pytest.fixture
def staff_client(django_user_model: type[User]) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user("boss", password="x", is_staff=True))
    return client


@pytest.fixture
def flaky() -> dict[str, object]:
    """`flaky` (30 ETH) was down from 3 h to 1 h ago and missed the batch seen then; `steady` (10 ETH) is up."""
    now = timezone.now()
    flaky = operator_create(label="flaky", stake=30 * ETH)
    steady = operator_create(label="steady", stake=10 * ETH)
    gone = operator_create(label="gone", stake=5 * ETH, registered=False)
    OperatorStateChange.objects.create(
        operator_id=flaky.operator_id,
        state="up",
        since=now - timedelta(hours=6),
        until=now - timedelta(hours=3),
    )
    OperatorStateChange.objects.create(
        operator_id=flaky.operator_id,
        state="down",
        since=now - timedelta(hours=3),
        until=now - timedelta(hours=1),
    )
    OperatorStateChange.objects.create(
        operator_id=flaky.operator_id, state="up", since=now - timedelta(hours=1)
    )
    OperatorLiveness.objects.create(
        operator_id=flaky.operator_id,
        state="up",
        since=now - timedelta(hours=1),
        last_seen_at=now - timedelta(minutes=5),
        node_version="operator/1.2.3",
    )
    OperatorLiveness.objects.create(
        operator_id=steady.operator_id, state="up", since=now - timedelta(hours=6)
    )
    missed = batch_create(label="missed", created_block=100)
    signed_while_down = batch_create(label="signed", created_block=101)
    later = batch_create(label="later", created_block=102)
    Batch.objects.filter(id__in=[missed.id, signed_while_down.id]).update(
        first_seen_at=now - timedelta(hours=2)
    )
    signature_create(batch=signed_while_down, operator=flaky)
    signature_create(batch=later, operator=flaky, status=SignatureStatus.PENDING)
    signature_create(batch=later, operator=steady)
    return {"flaky": flaky, "steady": steady, "gone": gone, "missed": missed, "later": later}


def test_it_lists_state_share_last_seen_and_missed_batches(user_client: Client, flaky: dict) -> None:
    html = user_client.get("/operators/").content.decode()

    assert rows(html) == [
        (flaky["flaky"].operator_id, "up"),
        (flaky["steady"].operator_id, "up"),
        (flaky["gone"].operator_id, "unknown"),  # deregistered last
    ]
    flaky_row = html[html.index(f'data-operator-id="{flaky["flaky"].operator_id}"') :].split("</tr>")[0]
    assert "30.00 ETH" in flaky_row
    assert "75.0%" in flaky_row  # of the 40 ETH registered
    assert "5 min ago" in flaky_row
    assert re.search(r'<td class="num warn">1</td>', flaky_row)  # the batch seen while it was down
    steady_row = html[html.index(f'data-operator-id="{flaky["steady"].operator_id}"') :].split("</tr>")[0]
    assert "25.0%" in steady_row
    assert '<td class="num">0</td>' in steady_row
    gone_row = html[html.index(f'data-operator-id="{flaky["gone"].operator_id}"') :].split("</tr>")[0]
    assert "deregistered" in gone_row
    assert "0.0%" in gone_row


def test_it_filters_operators_by_state(user_client: Client, flaky: dict) -> None:
    OperatorLiveness.objects.filter(operator_id=flaky["steady"].operator_id).update(state="down")

    assert rows(user_client.get("/operators/?state=down").content.decode()) == [
        (flaky["steady"].operator_id, "down")
    ]
    assert [r[0] for r in rows(user_client.get("/operators/?state=unknown").content.decode())] == [
        flaky["gone"].operator_id
    ]
    assert "No operator is degraded." in user_client.get("/operators/?state=degraded").content.decode()
    assert len(rows(user_client.get("/operators/?state=whatever").content.decode())) == 3


def test_it_the_operator_list_costs_a_fixed_number_of_queries(
    user_client: Client, django_assert_max_num_queries: object
) -> None:
    now = timezone.now()
    for i in range(25):
        operator = operator_create(label=f"op{i}", stake=(i + 1) * ETH)
        OperatorLiveness.objects.create(operator_id=operator.operator_id, state="up", since=now)
        OperatorStateChange.objects.create(
            operator_id=operator.operator_id, state="down", since=now, until=None
        )
    batch_create(label="b")

    # session, user, count, rows (liveness and missed batches as subqueries), total stake.
    with django_assert_max_num_queries(5):  # type: ignore[operator]
        html = user_client.get("/operators/").content.decode()
    assert len(rows(html)) == 25


def test_it_shows_one_operators_uptime_signatures_and_catch_up(user_client: Client, flaky: dict) -> None:
    operator = flaky["flaky"]
    RecoveryTask.objects.create(
        kind=RecoveryKind.CATCHUP,
        subject=operator.operator_id,
        next_attempt_at=timezone.now(),
        attempts=2,
        last_error="control endpoint answered 503",
    )

    response = user_client.get(f"/operators/{operator.operator_id}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "operator/1.2.3" in html
    assert "75.0% of registered stake" in html
    # 24 h window: 18 h unknown, 3 h up, 2 h down, 1 h up -> up 4 h of the 6 h known.
    assert re.search(r'data-testid="uptime-percent">66.7%<', html)
    assert "down 2 h" in html
    assert html.count('class="strip-seg state-bg-down"') == 1
    assert "still down" not in html
    # Signatures: the one while down (verified) and the later one (pending), newest first.
    assert html.index(flaky["later"].identifier[:8]) < html.index("sig-verified")
    # It owes the pending batches it has not signed: "missed" (the others it signed).
    assert re.search(r'data-testid="catchup-owed">1 pending batch<', html)
    assert "control endpoint answered 503" in html
    assert 'Missed batches in this window <span class="muted count">(1)</span>' in html


def test_it_splits_a_window_into_state_segments() -> None:
    now = timezone.now()
    operator_id = hex32("op")
    OperatorStateChange.objects.create(
        operator_id=operator_id,
        state="down",
        since=now - timedelta(hours=30),
        until=now - timedelta(hours=20),
    )
    OperatorStateChange.objects.create(operator_id=operator_id, state="up", since=now - timedelta(hours=20))

    segments = uptime_segments(operator_id=operator_id, start=now - timedelta(hours=24), end=now)

    assert [(s.state, round(s.width_percent, 3)) for s in segments] == [("down", 16.667), ("up", 83.333)]
    assert segments[0].left_percent == 0
    assert segments[-1].end == now


def test_it_catch_up_buttons_are_for_staff_only(
    user_client: Client, staff_client: Client, flaky: dict
) -> None:
    url = f"/operators/{flaky['flaky'].operator_id}/"
    assert 'data-testid="recovery-dry-run"' not in user_client.get(url).content.decode()

    html = staff_client.get(url).content.decode()
    assert 'data-recovery-action="catchup"' in html
    assert f'data-target="{flaky["flaky"].operator_id}"' in html
    assert 'data-testid="recovery-dry-run"' in html
    assert 'data-testid="recovery-start"' in html
    assert 'data-testid="recovery-result"' in html


def test_it_answers_404_for_unknown_and_malformed_operator_ids(user_client: Client) -> None:
    assert user_client.get(f"/operators/{hex32('nobody')}/").status_code == 404
    assert user_client.get("/operators/alice/").status_code == 404
    assert user_client.get("/operators/0x12/").status_code == 404


def test_it_counts_missed_batches_only_within_the_window_shown(user_client: Client, flaky: dict) -> None:
    # A batch missed in an outage three days ago: in the 7-day window, not in the 24-hour one nor the list.
    now = timezone.now()
    OperatorStateChange.objects.create(
        operator_id=flaky["flaky"].operator_id,
        state="down",
        since=now - timedelta(days=3, hours=1),
        until=now - timedelta(days=3),
    )
    old = batch_create(label="old-miss", created_block=50)
    Batch.objects.filter(id=old.id).update(first_seen_at=now - timedelta(days=3, minutes=30))
    path = f"/operators/{flaky['flaky'].operator_id}/"

    day = user_client.get(path).content.decode()
    week = user_client.get(path + "?window=7d").content.decode()
    listed = user_client.get("/operators/").content.decode()

    assert 'Missed batches in this window <span class="muted count">(1)</span>' in day
    assert 'Missed batches in this window <span class="muted count">(2)</span>' in week
    assert re.search(r'class="num warn">1<', listed)
