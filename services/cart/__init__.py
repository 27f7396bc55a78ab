"""The cart service: each user's shopping cart, priced from the catalog."""
