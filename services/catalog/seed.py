"""Demo data: 6 categories, 54 active products with stock, prices in EUR cents.

``seed(db)`` is idempotent: categories are matched by slug and products by SKU, so running
it again (or after partial data) only adds what is missing. The schema must exist
(``charter.migrations.upgrade("catalog", MIGRATIONS_DIR, url)``).
"""

from __future__ import annotations

from charter.db import Database

from . import domain
from .store import SqlCatalogRepository

CURRENCY = "EUR"

# slug, name, description, SKU prefix, [(product name, price in cents, units on hand)]
CATALOG: list[tuple[str, str, str, str, list[tuple[str, int, int]]]] = [
    ("coffee", "Coffee", "Beans and ground coffee from small roasters.", "COF", [
        ("Espresso Blend 1 kg", 2490, 120), ("Colombia Supremo 500 g", 1450, 80),
        ("Ethiopia Yirgacheffe 250 g", 1190, 60), ("Decaf Swiss Water 500 g", 1390, 40),
        ("Brazil Santos 1 kg", 2190, 90), ("Guatemala Antigua 500 g", 1590, 50),
        ("Kenya AA 250 g", 1290, 30), ("Sumatra Mandheling 500 g", 1690, 45),
        ("Cold Brew Grind 1 kg", 2290, 70),
    ]),
    ("tea", "Tea", "Loose-leaf teas and infusions.", "TEA", [
        ("Earl Grey 100 g", 690, 150), ("Sencha Green 100 g", 890, 100),
        ("Darjeeling First Flush 100 g", 1290, 40), ("Rooibos Vanilla 100 g", 590, 110),
        ("Chamomile Blossom 50 g", 490, 90), ("Assam Breakfast 250 g", 990, 75),
        ("Jasmine Pearls 50 g", 1490, 25), ("Peppermint Leaves 100 g", 550, 130),
        ("Oolong Milky 100 g", 1190, 35),
    ]),
    ("brewing", "Brewing gear", "Everything to make coffee and tea at home.", "BRW", [
        ("Pour-Over Dripper", 2490, 40), ("Paper Filters (100)", 590, 300),
        ("French Press 1 l", 3490, 25), ("Gooseneck Kettle", 5990, 15),
        ("Burr Grinder", 12900, 10), ("Digital Scale", 2990, 30),
        ("Tea Infuser Ball", 790, 200), ("Glass Teapot 800 ml", 2790, 20),
        ("Milk Frother", 1990, 35),
    ]),
    ("cups", "Cups and mugs", "Porcelain, glass and travel cups.", "CUP", [
        ("Espresso Cup Set (2)", 1890, 60), ("Cappuccino Cup", 1290, 80),
        ("Double-Wall Glass 250 ml", 1490, 70), ("Travel Mug 350 ml", 2490, 55),
        ("Stoneware Mug", 1590, 90), ("Latte Glass (4)", 2190, 40),
        ("Tea Bowl", 1390, 30), ("Enamel Camping Mug", 990, 100),
        ("Thermal Flask 500 ml", 2990, 45),
    ]),
    ("sweets", "Sweets", "Biscuits and chocolate to go with your cup.", "SWT", [
        ("Almond Biscotti 200 g", 490, 150), ("Dark Chocolate 70 % 100 g", 390, 200),
        ("Butter Shortbread 150 g", 450, 120), ("Caramel Waffles 250 g", 590, 110),
        ("Hazelnut Pralines 125 g", 890, 60), ("Ginger Cookies 200 g", 420, 140),
        ("Milk Chocolate Squares 100 g", 350, 180), ("Amaretti 150 g", 520, 90),
        ("Candied Orange Peel 100 g", 640, 50),
    ]),
    ("syrups", "Syrups", "Flavour syrups for coffee drinks.", "SYR", [
        ("Vanilla Syrup 250 ml", 690, 100), ("Caramel Syrup 250 ml", 690, 95),
        ("Hazelnut Syrup 250 ml", 690, 85), ("Cinnamon Syrup 250 ml", 690, 60),
        ("Gingerbread Syrup 250 ml", 790, 40), ("Coconut Syrup 250 ml", 690, 55),
        ("Salted Caramel Syrup 250 ml", 790, 70), ("Pumpkin Spice Syrup 250 ml", 790, 35),
        ("Sugar-Free Vanilla 250 ml", 750, 65),
    ]),
]


def seed(db: Database) -> int:
    """Insert the demo catalog where missing; returns how many products it created."""
    created = 0
    with db.write() as session:
        repo = SqlCatalogRepository(session)
        for slug, name, description, prefix, products in CATALOG:
            category = repo.category_by_slug(slug) or repo.add_category(slug, name, description)
            for number, (product_name, cents, on_hand) in enumerate(products, start=1):
                sku = f"{prefix}-{number:04d}"
                if repo.sku_taken(sku):
                    continue
                repo.add_product(
                    sku=sku,
                    name=product_name,
                    description=f"{product_name} — {name.lower()} from the Charter shop.",
                    category_id=category.id,
                    price=domain.Price(cents, CURRENCY),
                    active=True,
                    on_hand=on_hand,
                )
                created += 1
    return created
