"""Read one sample from a ``/metrics`` page (Prometheus text format)."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a page: ``(name, labels) → value``."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def sample(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` of a page (0 when absent)."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def scrape(client: Any) -> str:
    """``GET /metrics`` of a test client (Connexion's or Flask's)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    text = getattr(response, "text", None)
    return text if isinstance(text, str) else response.get_data(as_text=True)
