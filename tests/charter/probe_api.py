"""Handlers of the probe API used by the app-factory tests."""

from typing import Any

from charter.problems import Conflict, NotFound


def get_thing(thing_id: int, user: str) -> dict[str, Any]:
    if thing_id == 404:
        raise NotFound(f"thing {thing_id} does not exist")
    if thing_id == 409:
        raise Conflict("busy", status=409)
    if thing_id == 500:
        raise RuntimeError("database password is hunter2")
    return {"id": thing_id, "name": "probe", "owner": user}


def create_thing(body: dict[str, Any], user: str) -> tuple[dict[str, Any], int]:
    return {"id": 1, "name": body["name"], "owner": user}, 201
