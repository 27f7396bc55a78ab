"""The catalog service: categories, products, stock and stock reservations."""
