"""Platform tooling: the ``charter`` command (up, token, demo, db, pki, keys).

It may import every component; nothing imports it. The runtime library every component
uses is :mod:`charter`, which imports no component (see ``docs/architecture.md``).
"""
