"""The API gateway: one entry point, routes generated from ``openapi/``, JWT check, limits."""
