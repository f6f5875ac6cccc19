"""The hero API (examples/heroes_api/app.py) on SQLite, PostgreSQL and MySQL.

The first six tests are the reference tutorial's own cases. Requests go through httpx's
AsyncClient with ASGITransport (``client``: herorepo_client sending X-Tenant: acme, see
conftest.py); checks read the database through ``herorepo_db``, which sees what the requests
committed inside the test's transaction.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from examples.heroes_api.app import Hero, Team, app
from herorepo import Database
from herorepo.integrations.fastapi import get_database
from herorepo.testing import assert_max_queries, count_queries

pytestmark = pytest.mark.asyncio

SPIDER_BOY = {"name": "Spider-Boy", "secret_name": "Peter Parker"}
GLOBEX = {"X-Tenant": "globex"}  # the headers of a request of another tenant than client's


async def create_hero(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    response = await client.post("/heroes/", json={**SPIDER_BOY, **fields}, headers=headers)
    assert response.status_code == 200, response.text
    hero: dict[str, Any] = response.json()
    return hero


async def create_team(
    client: httpx.AsyncClient, name: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/teams/", json={"name": name, "headquarters": "Sharp Tower"}, headers=headers
    )
    assert response.status_code == 200, response.text
    team: dict[str, Any] = response.json()
    return team


async def stored(db: Database, hero_id: int) -> Hero | None:
    """The row as the database holds it, whatever its tenant, deleted or not (admin work)."""
    async with db.unit_of_work(all_tenants=True) as uow:
        return await uow.repository(Hero).with_deleted().get(hero_id)


async def listed(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> list[str]:
    """The names of the heroes GET /heroes/ lists, by name."""
    response = await client.get("/heroes/", params={"order_by": "name"}, headers=headers)
    assert response.status_code == 200, response.text
    return [hero["name"] for hero in response.json()["items"]]


# --- the reference's cases -----------------------------------------------------------------------


async def test_create_hero(client: httpx.AsyncClient) -> None:
    response = await client.post("/heroes/", json=SPIDER_BOY)
    data = response.json()
    assert response.status_code == 200
    assert data["name"] == "Spider-Boy"
    assert data["secret_name"] == "Peter Parker"
    assert data["age"] is None
    assert isinstance(data["id"], int)


async def test_read_heroes_lists_the_new_hero(client: httpx.AsyncClient) -> None:
    created = await create_hero(client)
    await create_hero(client, name="Rusty-Man", secret_name="Tommy Sharp", age=48)
    response = await client.get("/heroes/")
    assert response.status_code == 200
    page = response.json()
    assert page["items"][0] == created
    assert [hero["name"] for hero in page["items"]] == ["Spider-Boy", "Rusty-Man"]
    assert page["next_cursor"] is None


async def test_read_missing_hero_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/heroes/9999")
    assert response.status_code == 404
    assert response.json() == {"detail": "Hero with the id asked for does not exist."}


async def test_update_changes_only_the_fields_sent(
    client: httpx.AsyncClient, herorepo_db: Database
) -> None:
    hero = await create_hero(client, age=16)
    response = await client.patch(f"/heroes/{hero['id']}", json={"name": "Spider-Man"})
    assert response.status_code == 200
    assert response.json() == {**hero, "name": "Spider-Man"}
    row = await stored(herorepo_db, hero["id"])
    assert row is not None
    assert (row.name, row.secret_name, row.age) == ("Spider-Man", "Peter Parker", 16)


async def test_update_can_set_a_field_to_null(client: httpx.AsyncClient) -> None:
    hero = await create_hero(client, age=16)
    response = await client.patch(f"/heroes/{hero['id']}", json={"age": None})
    assert response.json() == {**hero, "age": None}


async def test_delete_twice_is_404_the_second_time(
    client: httpx.AsyncClient, herorepo_db: Database
) -> None:
    hero = await create_hero(client)
    first = await client.delete(f"/heroes/{hero['id']}")
    assert (first.status_code, first.content) == (204, b"")
    row = await stored(herorepo_db, hero["id"])
    assert row is not None  # soft delete: the row stays, marked deleted
    assert row.deleted_at is not None
    second = await client.delete(f"/heroes/{hero['id']}")
    assert second.status_code == 404


async def test_team_read_loads_its_heroes_eagerly(
    client: httpx.AsyncClient, herorepo_db: Database
) -> None:
    team = await create_team(client, "Preventers")
    for name in ("Rusty-Man", "Spider-Boy"):
        await create_hero(client, name=name, team_id=team["id"])
    # The team and its heroes: two SELECTs, however many heroes. A lazy load would have raised
    # LazyLoadError (a 500) instead of running a third.
    with assert_max_queries(herorepo_db, 2) as queries:
        response = await client.get(f"/teams/{team['id']}")
    assert response.status_code == 200
    assert queries.count == 2
    data = response.json()
    assert (data["name"], data["headquarters"]) == ("Preventers", "Sharp Tower")
    assert sorted(hero["name"] for hero in data["heroes"]) == ["Rusty-Man", "Spider-Boy"]


# --- beyond the reference ------------------------------------------------------------------------


async def test_create_notifies_in_the_background(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="heroes_api"):
        hero = await create_hero(client)
    assert f"New hero: Spider-Boy (id={hero['id']})" in caplog.messages


async def test_listing_pages_with_cursors(client: httpx.AsyncClient) -> None:
    for name, age in [
        ("Deadpond", 30),
        ("Rusty-Man", 48),
        ("Spider-Boy", None),
        ("Tarantula", 32),
        ("Dr. Weird", 36),
    ]:
        await create_hero(client, name=name, age=age)
    seen: list[str] = []
    params: dict[str, Any] = {"order_by": "-age", "limit": 2}
    pages = 0
    while True:
        page = (await client.get("/heroes/", params=params)).json()
        pages += 1
        seen += [hero["name"] for hero in page["items"]]
        if page["next_cursor"] is None:
            break
        params["after"] = page["next_cursor"]
    assert pages == 3
    # Oldest first; the hero without an age comes last.
    assert seen == ["Rusty-Man", "Dr. Weird", "Tarantula", "Deadpond", "Spider-Boy"]
    # And back again with before=, from the last page to the first.
    back: list[list[str]] = [[hero["name"] for hero in page["items"]]]
    while page["previous_cursor"] is not None:
        params = {"order_by": "-age", "limit": 2, "before": page["previous_cursor"]}
        page = (await client.get("/heroes/", params=params)).json()
        back.insert(0, [hero["name"] for hero in page["items"]])
    assert back == [["Rusty-Man", "Dr. Weird"], ["Tarantula", "Deadpond"], ["Spider-Boy"]]


async def test_listing_filters(client: httpx.AsyncClient) -> None:
    team = await create_team(client, "Z-Force")
    await create_hero(client, name="Deadpond", age=30, team_id=team["id"])
    await create_hero(client, name="Rusty-Man", age=48)
    await create_hero(client, name="Spider-Boy")

    async def names(**params: Any) -> list[str]:
        response = await client.get("/heroes/", params={"order_by": "name", **params})
        assert response.status_code == 200, response.text
        return [hero["name"] for hero in response.json()["items"]]

    assert await names(name__icontains="MAN") == ["Rusty-Man"]
    assert await names(age__ge=30) == ["Deadpond", "Rusty-Man"]
    assert await names(age__isnull="true") == ["Spider-Boy"]
    assert await names(team_id=team["id"]) == ["Deadpond"]


@pytest.mark.parametrize(
    ("params", "kind", "loc", "message"),
    [
        ({"power": "web"}, "invalid_filter", [], "Filterable fields: age, name, team_id"),
        ({"age__ge": "old"}, "int_parsing", ["age__ge"], "valid integer"),
        ({"age": str(2**31)}, "less_than_equal", ["age"], "less than or equal to 2147483647"),
        ({"team_id__in": "1,x"}, "invalid_filter", [], "Invalid value for 'team_id'"),
        ({"order_by": "secret_name"}, "invalid_filter", [], "Cannot sort Hero by 'secret_name'"),
        ({"limit": "1000"}, "less_than_equal", ["limit"], "less than or equal to 100"),
        ({"after": "bm90IGEgY3Vyc29y"}, "invalid_cursor", [], "Invalid pagination cursor"),
        ({"offset": "20"}, "invalid_filter", [], "not offset"),
    ],
    ids=[
        "unknown-field",
        "bad-value",
        "out-of-range",
        "bad-list",
        "unsortable",
        "limit",
        "cursor",
        "offset",
    ],
)
async def test_listing_refuses_bad_parameters_with_422(
    client: httpx.AsyncClient,
    params: dict[str, str],
    kind: str,
    loc: list[str],
    message: str,
) -> None:
    """Declared parameters of the wrong type are FastAPI's own 422s, naming the parameter."""
    response = await client.get("/heroes/", params=params)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["type"], error["loc"]) == (kind, ["query", *loc])
    assert message in error["msg"]


async def test_listing_parameters_are_in_the_openapi_schema(
    client: httpx.AsyncClient,
) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/heroes/"]["get"]
    types = {param["name"]: param["schema"].get("type") for param in operation["parameters"]}
    assert types == {
        "age": "integer",
        "age__lt": "integer",
        "age__le": "integer",
        "age__gt": "integer",
        "age__ge": "integer",
        "age__isnull": "boolean",
        "name": "string",
        "name__icontains": "string",
        "team_id": "integer",
        "team_id__in": "array",
        "team_id__isnull": "boolean",
        "order_by": "string",
        "limit": "integer",
        "after": "string",  # keyset pages: no offset
        "before": "string",
    }


async def test_a_taken_team_name_is_409(client: httpx.AsyncClient) -> None:
    team = {"name": "Preventers", "headquarters": "Sharp Tower"}
    assert (await client.post("/teams/", json=team)).status_code == 200
    response = await client.post("/teams/", json=team)
    assert response.status_code == 409
    assert response.json() == {"detail": "A record with the same unique value already exists."}


async def test_a_hero_of_a_missing_team_is_404(
    client: httpx.AsyncClient, herorepo_db: Database
) -> None:
    response = await client.post("/heroes/", json={**SPIDER_BOY, "team_id": 9999})
    assert (response.status_code, response.json()) == (404, {"detail": "Team not found"})
    hero = await create_hero(client)
    response = await client.patch(f"/heroes/{hero['id']}", json={"team_id": 9999})
    assert (response.status_code, response.json()) == (404, {"detail": "Team not found"})
    row = await stored(herorepo_db, hero["id"])
    assert row is not None
    assert row.team_id is None


async def test_update_refuses_an_unknown_field(
    client: httpx.AsyncClient, herorepo_db: Database
) -> None:
    hero = await create_hero(client)
    response = await client.patch(f"/heroes/{hero['id']}", json={"nmae": "Spider-Man"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["type"], error["loc"]) == ("extra_forbidden", ["body", "nmae"])
    row = await stored(herorepo_db, hero["id"])
    assert row is not None
    assert row.name == "Spider-Boy"


async def test_update_refuses_null_for_a_required_field_naming_it(
    client: httpx.AsyncClient,
) -> None:
    hero = await create_hero(client)
    response = await client.patch(f"/heroes/{hero['id']}", json={"name": None})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "name"]


async def test_teams_are_listed_by_name(client: httpx.AsyncClient) -> None:
    for name in ("Z-Force", "Preventers", "Avengers"):
        await client.post("/teams/", json={"name": name, "headquarters": "?"})
    response = await client.get("/teams/", params={"order_by": "name", "offset": 1})
    assert response.status_code == 200, response.text
    assert [team["name"] for team in response.json()] == ["Preventers", "Z-Force"]
    response = await client.get("/teams/", params={"name__icontains": "FORCE"})
    assert [team["name"] for team in response.json()] == ["Z-Force"]


async def test_delete_team_keeps_its_heroes_without_a_team(
    client: httpx.AsyncClient, herorepo_db: Database
) -> None:
    team = await create_team(client, "Preventers")
    hero = await create_hero(client, team_id=team["id"])
    response = await client.delete(f"/teams/{team['id']}")
    assert (response.status_code, response.content) == (204, b"")
    assert (await client.get(f"/teams/{team['id']}")).status_code == 404
    assert (await client.delete(f"/teams/{team['id']}")).status_code == 404
    row = await stored(herorepo_db, hero["id"])
    assert row is not None
    assert row.team_id is None


# --- tenants -------------------------------------------------------------------------------------


async def test_a_request_without_a_tenant_is_400(herorepo_client: httpx.AsyncClient) -> None:
    """herorepo_client sends no X-Tenant header: no request reaches the data."""
    expected = {"detail": "This request names no tenant: set the X-Tenant header."}
    for response in [
        await herorepo_client.get("/heroes/"),
        await herorepo_client.post("/heroes/", json=SPIDER_BOY),
        await herorepo_client.get("/teams/1"),
        await herorepo_client.get("/heroes/", headers={"X-Tenant": ""}),
    ]:
        assert (response.status_code, response.json()) == (400, expected)


async def test_a_hero_of_another_tenant_is_not_there(
    client: httpx.AsyncClient, herorepo_db: Database
) -> None:
    hero = await create_hero(client)
    await create_hero(client, headers=GLOBEX, name="Deadpond")
    missing = {"detail": "Hero with the id asked for does not exist."}
    url = f"/heroes/{hero['id']}"
    for response in [
        await client.get(url, headers=GLOBEX),
        await client.patch(url, json={"name": "Spider-Man"}, headers=GLOBEX),
        await client.delete(url, headers=GLOBEX),
        await client.post(f"{url}/restore", headers=GLOBEX),
    ]:
        assert (response.status_code, response.json()) == (404, missing)
    assert await listed(client) == ["Spider-Boy"]
    assert await listed(client, headers=GLOBEX) == ["Deadpond"]
    row = await stored(herorepo_db, hero["id"])
    assert row is not None
    assert (row.tenant_id, row.name, row.deleted_at) == ("acme", "Spider-Boy", None)
    assert (await client.get(url)).json() == hero


async def test_the_tenant_is_the_servers_to_set(
    client: httpx.AsyncClient, herorepo_db: Database
) -> None:
    """The request's header sets the tenant; the body may not name one, nor see it."""
    hero = await create_hero(client)
    assert "tenant_id" not in hero
    row = await stored(herorepo_db, hero["id"])
    assert row is not None
    assert row.tenant_id == "acme"
    forged = await client.post("/heroes/", json={**SPIDER_BOY, "tenant_id": "globex"})
    moved = await client.patch(f"/heroes/{hero['id']}", json={"tenant_id": "globex"})
    team = await client.post("/teams/", json={"name": "X", "headquarters": "?", "tenant_id": "g"})
    for response in (forged, moved, team):
        assert response.status_code == 422
        assert response.json()["detail"][0]["type"] == "extra_forbidden"


async def test_a_team_of_another_tenant_is_not_there(client: httpx.AsyncClient) -> None:
    theirs = await create_team(client, "Preventers", headers=GLOBEX)
    ours = await create_team(client, "Preventers")  # team names are unique per tenant
    again = await client.post("/teams/", json={"name": "Preventers", "headquarters": "?"})
    assert again.status_code == 409
    assert (await client.get(f"/teams/{theirs['id']}")).status_code == 404
    assert (await client.delete(f"/teams/{theirs['id']}")).status_code == 404
    assert [team["id"] for team in (await client.get("/teams/")).json()] == [ours["id"]]
    # The foreign key would take their team: the app looks it up among ours.
    not_found = (404, {"detail": "Team not found"})
    response = await client.post("/heroes/", json={**SPIDER_BOY, "team_id": theirs["id"]})
    assert (response.status_code, response.json()) == not_found
    hero = await create_hero(client)
    response = await client.patch(f"/heroes/{hero['id']}", json={"team_id": theirs["id"]})
    assert (response.status_code, response.json()) == not_found
    assert (await client.get(f"/teams/{theirs['id']}", headers=GLOBEX)).json()["heroes"] == []


async def test_a_cursor_of_one_tenant_is_refused_to_another(client: httpx.AsyncClient) -> None:
    for name in ("Deadpond", "Rusty-Man"):
        await create_hero(client, name=name)
        await create_hero(client, headers=GLOBEX, name=name)
    page = (await client.get("/heroes/", params={"order_by": "name", "limit": 1})).json()
    params = {"order_by": "name", "limit": 1, "after": page["next_cursor"]}
    assert (await client.get("/heroes/", params=params)).json()["items"][0]["name"] == "Rusty-Man"
    response = await client.get("/heroes/", params=params, headers=GLOBEX)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "invalid_cursor"


# --- soft delete ---------------------------------------------------------------------------------


async def test_a_deleted_hero_is_gone_until_restored(
    client: httpx.AsyncClient, herorepo_db: Database
) -> None:
    hero = await create_hero(client, age=16)
    await create_hero(client, name="Rusty-Man")
    url = f"/heroes/{hero['id']}"
    assert (await client.delete(url)).status_code == 204
    assert (await client.get(url)).status_code == 404
    assert (await client.patch(url, json={"age": 17})).status_code == 404
    assert await listed(client) == ["Rusty-Man"]
    row = await stored(herorepo_db, hero["id"])
    assert row is not None
    assert row.deleted_at is not None

    response = await client.post(f"{url}/restore")
    assert (response.status_code, response.json()) == (200, hero)
    assert (await client.get(url)).json() == hero
    assert await listed(client) == ["Rusty-Man", "Spider-Boy"]
    row = await stored(herorepo_db, hero["id"])
    assert row is not None
    assert row.deleted_at is None
    assert (await client.post(f"{url}/restore")).json() == hero  # not deleted: as it is
    assert (await client.post("/heroes/9999/restore")).status_code == 404


async def test_a_deleted_hero_leaves_its_team(
    client: httpx.AsyncClient, herorepo_db: Database
) -> None:
    team = await create_team(client, "Preventers")
    gone = await create_hero(client, name="Rusty-Man", team_id=team["id"])
    await create_hero(client, team_id=team["id"])
    assert (await client.delete(f"/heroes/{gone['id']}")).status_code == 204
    heroes = (await client.get(f"/teams/{team['id']}")).json()["heroes"]
    assert [hero["name"] for hero in heroes] == ["Spider-Boy"]
    # The deleted hero still refers to the team; deleting the team sets it to NULL too.
    assert (await client.delete(f"/teams/{team['id']}")).status_code == 204
    row = await stored(herorepo_db, gone["id"])
    assert row is not None
    assert (row.team_id, row.deleted_at is not None) == (None, True)
    restored = (await client.post(f"/heroes/{gone['id']}/restore")).json()
    assert restored == {**gone, "team_id": None}


async def test_each_test_starts_empty(herorepo_db: Database) -> None:
    """The tests above committed through the API; the plugin rolled each of them back."""
    async with herorepo_db.unit_of_work(all_tenants=True) as uow:
        assert await uow.repository(Hero).with_deleted().count() == 0
        assert await uow.repository(Team).count() == 0


async def test_client_override_is_removed_after_the_test() -> None:
    assert get_database not in app.dependency_overrides


async def test_list_query_count_does_not_grow_with_rows(
    client: httpx.AsyncClient, herorepo_db: Database
) -> None:
    for number in range(5):
        await create_hero(client, name=f"Hero {number}")
    with count_queries(herorepo_db) as queries:
        response = await client.get("/heroes/")
    assert len(response.json()["items"]) == 5
    assert queries.count == 1, queries


async def test_a_team_is_read_with_its_heroes_in_two_statements(
    client: httpx.AsyncClient, herorepo_db: Database
) -> None:
    team = await create_team(client, "Preventers")
    for name in ("Rusty-Man", "Deadpond", "Gone"):
        await create_hero(client, name=name, team_id=team["id"])
    gone = (await client.get("/heroes/", params={"name": "Gone"})).json()["items"][0]
    assert (await client.delete(f"/heroes/{gone['id']}")).status_code == 204
    with assert_max_queries(herorepo_db, 2) as queries:  # the team, then its heroes' columns
        response = await client.get(f"/teams/{team['id']}")
    assert "secret_name" in queries.statements[1]  # HeroPublic has it
    assert "deleted_at" not in queries.statements[1].split("FROM")[0]
    body = response.json()
    assert [hero["name"] for hero in body["heroes"]] == ["Rusty-Man", "Deadpond"]
    assert set(body) == {"id", "name", "headquarters", "heroes"}
