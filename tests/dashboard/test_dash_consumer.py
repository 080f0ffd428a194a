"""The dashboard socket through Channels' real stack (origin check, session auth) and the
real channel layer (Redis): who may connect, what arrives, and how bursts are coalesced."""

import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from controlplane.circuits import events
from controlplane.circuits.models import Circuit
from controlplane.circuits.operations import force_circuit
from dashboard import consumers
from dashboard.routing import websocket_urlpatterns

# serialized_rollback like every transactional test here: a flush without it recreates the
# roles (post_migrate) and the next serialized test would insert them twice.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def app(settings: Any) -> Any:
    """The websocket stack of controlplane/asgi.py, built after the test settings apply."""
    settings.ALLOWED_HOSTS = ["testserver"]
    return AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))


def cookie_of(user: User | None) -> bytes:
    if user is None:
        return b""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def socket(
    app: Any, user: User | None, origin: bytes = b"http://testserver", query: str = ""
) -> Any:
    headers = [(b"origin", origin), (b"host", b"testserver")]
    if user is not None:
        headers.append((b"cookie", await sync_to_async(cookie_of)(user)))
    return WebsocketCommunicator(app, f"/ws/dashboard/{query}", headers=headers)


async def refused(communicator: WebsocketCommunicator) -> bool:
    connected, _ = await communicator.connect(timeout=5)
    await communicator.disconnect()
    return not connected


def test_the_project_routes_the_dashboard_socket() -> None:
    import controlplane.asgi

    routes = [str(p.pattern) for p in controlplane.asgi.websocket_urlpatterns]
    assert "ws/dashboard/" in routes


async def test_anonymous_is_refused(app: Any) -> None:
    assert await refused(await socket(app, None))


async def test_user_without_a_role_is_refused(app: Any) -> None:
    nobody = await sync_to_async(User.objects.create_user)("nobody", password="x-pw-123!")
    assert await refused(await socket(app, nobody))


async def test_foreign_origin_is_refused(app: Any, viewer: User) -> None:
    assert await refused(await socket(app, viewer, origin=b"http://evil.example"))
    ok = await socket(app, viewer)
    connected, _ = await ok.connect(timeout=5)
    assert connected
    await ok.disconnect()


async def test_an_operator_action_arrives_as_a_fresh_tile(
    app: Any, viewer: User, operator: User, fleet: dict[str, Circuit]
) -> None:
    communicator = await socket(app, viewer)
    assert (await communicator.connect(timeout=5))[0]
    # The real write path: the operation publishes "fleet.override" after its commit.
    await sync_to_async(force_circuit)(fleet["db"], "forced_open", reason="x", user=operator)
    message = json.loads(await communicator.receive_from(timeout=5))
    assert message["type"] == "tiles"
    (tile,) = message["tiles"]
    assert (tile["key"], tile["state"], tile["label"]) == (
        "checkout/db",
        "forced_open",
        "forced open",
    )
    assert message["events"] == {"fleet.override": 1}
    await communicator.disconnect()


async def test_frames_from_the_browser_are_ignored_even_hostile_ones(
    app: Any, viewer: User, operator: User, fleet: dict[str, Circuit]
) -> None:
    communicator = await socket(app, viewer)
    assert (await communicator.connect(timeout=5))[0]
    await communicator.send_to(text_data="[" * 100_000 + "]" * 100_000)
    await communicator.send_to(text_data="not json")
    await sync_to_async(force_circuit)(fleet["db"], "forced_open", reason="x", user=operator)
    message = json.loads(await communicator.receive_from(timeout=5))
    assert message["type"] == "tiles"
    await communicator.disconnect()


async def test_a_sync_arrives_as_fresh_tiles(
    app: Any, viewer: User, fleet: dict[str, Circuit], sync_body: Any, agent_token: str
) -> None:
    communicator = await socket(app, viewer)
    assert (await communicator.connect(timeout=5))[0]
    body = sync_body(instance={"id": "web-2"}, breakers=[{"name": "db", "state": "open"}])

    def post() -> int:
        return (
            Client()
            .post(
                "/api/v1/agent/sync",
                data=json.dumps(body),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {agent_token}",
            )
            .status_code
        )

    assert await sync_to_async(post)() == 200
    message = json.loads(await communicator.receive_from(timeout=5))
    tiles = {t["key"]: t for t in message["tiles"]}
    assert tiles["checkout/db"]["state"] == "open"
    assert tiles["checkout/db"]["summary"] == "open on 1 of 3"
    await communicator.disconnect()


def transitions_event(circuits: list[Circuit], n: int, size: int) -> events.TransitionsEvent:
    """One sync's worth of transitions, built as ingest builds them."""
    return events.transitions_event(
        service_id=circuits[0].service_id,
        service="checkout",
        transitions=[
            events.transition_item(
                circuit_id=circuits[i % len(circuits)].pk,
                circuit=circuits[i % len(circuits)].name,
                instance=f"web-{n}",
                from_state="closed",
                to_state="open",
                at="2026-11-28T00:00:00.000000Z",
                reason="failure_rate",
            )
            for i in range(size)
        ],
    )


async def test_a_burst_of_events_is_coalesced(
    app: Any, viewer: User, fleet: dict[str, Circuit]
) -> None:
    communicator = await socket(app, viewer)
    assert (await communicator.connect(timeout=5))[0]
    # 1,000 transitions in 50 syncs' events (a channel holds 100 messages by default).
    circuits = [fleet["payments"], fleet["db"]]
    burst = [transitions_event(circuits, n, 20) for n in range(50)]
    started = time.monotonic()
    await sync_to_async(events.send_to_fleet_group)(*burst)
    messages: list[dict[str, Any]] = []
    received = 0
    while received < len(burst):
        message = json.loads(await communicator.receive_from(timeout=5))
        messages.append(message)
        received += message["events"]["fleet.transitions"]
    elapsed = time.monotonic() - started
    assert received == len(burst)  # every event counted, none lost
    # One message per coalescing interval at most, each naming a circuit once.
    assert len(messages) <= elapsed / consumers.COALESCE_SECONDS + 1
    assert len(messages) < len(burst) / 2
    for message in messages:
        keys = [t["key"] for t in message["tiles"]]
        assert len(keys) == len(set(keys)) <= 2
    assert await communicator.receive_nothing(timeout=consumers.COALESCE_SECONDS * 3)
    await communicator.disconnect()


async def test_an_alert_firing_and_its_acknowledgement_arrive(
    app: Any, viewer: User, operator: User, fleet: dict[str, Circuit]
) -> None:
    from controlplane.alerts.evaluate import evaluate
    from controlplane.alerts.models import Alert, AlertRule
    from controlplane.alerts.operations import acknowledge

    communicator = await socket(app, viewer)
    assert (await communicator.connect(timeout=5))[0]
    rule = await sync_to_async(AlertRule.objects.create)(
        name="payments open", kind="open_too_long", params={"duration": 10}, severity="critical"
    )
    # The alerts app's own evaluation publishes "alerts.changed" after its commit.
    await sync_to_async(evaluate)()
    message = json.loads(await communicator.receive_from(timeout=5))
    assert message["type"] == "alerts" and message["events"] == {"alerts.changed": 1}
    assert message["firing"] == 1
    (item,) = message["alerts"]
    assert (item["rule"], item["service"], item["circuit"], item["status"]) == (
        "payments open",
        "checkout",
        "payments",
        "firing",
    )
    assert item["circuit_id"] == fleet["payments"].pk and item["acknowledged_by"] is None

    alert = await sync_to_async(Alert.objects.get)(rule=rule)
    await sync_to_async(acknowledge)(alert, user=operator)
    message = json.loads(await communicator.receive_from(timeout=5))
    assert message["type"] == "alerts" and message["alerts"][0]["acknowledged_by"] == "otto"
    await communicator.disconnect()


async def test_a_burst_of_alert_events_is_coalesced(
    app: Any, viewer: User, fleet: dict[str, Circuit]
) -> None:
    from django.utils import timezone

    from controlplane.alerts import events as alert_events
    from controlplane.alerts.models import Alert, AlertRule

    def make() -> list[alert_events.AlertItem]:
        rule = AlertRule.objects.create(name="r", kind="failure_rate")
        now = timezone.now()
        alerts = [
            Alert.objects.create(
                rule=rule, circuit=c, status="firing", started_at=now, fired_at=now, created_at=now
            )
            for c in fleet.values()
        ]
        return [alert_events.alert_item(a) for a in alerts]

    items = await sync_to_async(make)()
    communicator = await socket(app, viewer)
    assert (await communicator.connect(timeout=5))[0]
    burst = 50

    def send() -> None:
        for n in range(burst):
            alert_events.send_now(
                {"type": "alerts.changed", "alerts": [items[n % len(items)]], "truncated": 0}
            )

    started = time.monotonic()
    await sync_to_async(send)()
    messages: list[dict[str, Any]] = []
    received = 0
    while received < burst:
        message = json.loads(await communicator.receive_from(timeout=5))
        assert message["type"] == "alerts"
        messages.append(message)
        received += message["events"]["alerts.changed"]
    elapsed = time.monotonic() - started
    assert received == burst
    assert len(messages) <= elapsed / consumers.COALESCE_SECONDS + 1
    assert len(messages) < burst / 2
    for message in messages:
        ids = [a["id"] for a in message["alerts"]]
        assert len(ids) == len(set(ids)) <= len(items) and message["firing"] == len(items)
    assert await communicator.receive_nothing(timeout=consumers.COALESCE_SECONDS * 3)
    await communicator.disconnect()


async def test_traffic_messages_go_to_the_sockets_that_asked_for_that_circuit(
    app: Any, viewer: User, fleet: dict[str, Circuit]
) -> None:
    payments, db = fleet["payments"], fleet["db"]
    charts = await socket(app, viewer, query=f"?traffic={payments.pk}")
    overview = await socket(app, viewer)
    hostile = await socket(app, viewer, query="?traffic=%C2%B2,abc," + ",".join(["9"] * 50))
    for communicator in (charts, overview, hostile):
        assert (await communicator.connect(timeout=5))[0]
    await sync_to_async(events.send_to_fleet_group)(events.traffic_event([db.pk]))
    await sync_to_async(events.send_to_fleet_group)(events.traffic_event([payments.pk, db.pk]))
    message = json.loads(await charts.receive_from(timeout=5))
    assert message == {"type": "traffic", "circuits": [payments.pk]}
    for communicator in (charts, overview, hostile):
        assert await communicator.receive_nothing(timeout=consumers.COALESCE_SECONDS * 3)
        await communicator.disconnect()


async def test_a_team_viewer_receives_its_teams_circuits_only(
    app: Any, operator: User, fleet: dict[str, Circuit]
) -> None:
    from controlplane.circuits.models import Membership, Service, Team

    def setup() -> tuple[User, Circuit, Circuit]:
        mine, theirs = (
            Team.objects.create(name="a", slug="a"),
            Team.objects.create(name="b", slug="b"),
        )
        Service.objects.filter(pk=fleet["db"].service_id).update(team=mine)
        other = Service.objects.create(name="search", team=theirs)
        foreign = Circuit.objects.create(service=other, name="index")
        user = User.objects.create_user("team-a-viewer")
        Membership.objects.create(user=user, team=mine, role="viewer")
        return user, fleet["db"], foreign

    user, own, foreign = await sync_to_async(setup)()
    communicator = await socket(app, user)
    assert (await communicator.connect(timeout=5))[0]
    # Team B's circuit first: nothing may arrive for it, then team A's arrives alone.
    await sync_to_async(force_circuit)(foreign, "forced_open", reason="x", user=operator)
    assert await communicator.receive_nothing(timeout=consumers.COALESCE_SECONDS * 5)
    await sync_to_async(force_circuit)(own, "forced_open", reason="x", user=operator)
    message = json.loads(await communicator.receive_from(timeout=5))
    assert [t["key"] for t in message["tiles"]] == ["checkout/db"]
    # Transitions of both teams' circuits in one batch: only team A's tile.
    await sync_to_async(events.send_to_fleet_group)(transitions_event([foreign, own], 9, 4))
    message = json.loads(await communicator.receive_from(timeout=5))
    assert [t["key"] for t in message["tiles"]] == ["checkout/db"]
    assert await communicator.receive_nothing(timeout=consumers.COALESCE_SECONDS * 3)
    await communicator.disconnect()
