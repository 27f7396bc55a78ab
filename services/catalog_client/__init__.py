"""A typed client of catalog's published v1 API, shared by cart and orders.

Not a service: it owns no data and serves nothing; it is the one place that knows how
catalog's v1 answers map to Python (frozen dataclasses in :mod:`.models`, errors as
:class:`CatalogUnavailable`) and how to call it (:class:`HttpCatalogClient`, through
:class:`charter.http.HttpClient`). Services may import it; it imports no service.

Ports and service layers import :mod:`services.catalog_client.models` only (this package
imports nothing, so they never load the HTTP stack); app factories import
:class:`services.catalog_client.client.HttpCatalogClient`.
"""
