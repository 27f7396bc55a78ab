"""The orders service: orders placed from a cart or explicit items, stock reserved in the
catalog, confirmed against a payment, then loyalty points and a confirmation message."""
