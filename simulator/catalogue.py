"""The simulated shop's products: categories, prices, and what is bought together.

Companions give next-best-offer analytics a signal to find: a phone is usually bought
with a case and often with device insurance, pasta with sauce and parmesan.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price_eur: Decimal
    # Other SKUs bought with this one, and how often (0-1).
    companions: tuple[tuple[str, float], ...] = ()
    # How many of it a basket usually holds at most.
    max_quantity: int = 1


def _p(
    sku: str,
    name: str,
    category: str,
    price: str,
    companions: tuple[tuple[str, float], ...] = (),
    max_quantity: int = 1,
) -> Product:
    return Product(sku, name, category, Decimal(price), companions, max_quantity)


PRODUCTS: tuple[Product, ...] = (
    # groceries and beverages: the weekly rhythm
    _p(
        "GRO-COFFEE",
        "Coffee beans 1 kg",
        "groceries",
        "14.90",
        (("GRO-MILK", 0.7), ("BAK-CROISSANT", 0.35)),
        2,
    ),
    _p("GRO-MILK", "Fresh milk 1 l", "groceries", "1.29", max_quantity=4),
    _p("BAK-CROISSANT", "Butter croissants 4x", "bakery", "3.49", max_quantity=2),
    _p("BAK-BREAD", "Sourdough bread", "bakery", "3.90", (("GRO-BUTTER", 0.4),), 2),
    _p("GRO-BUTTER", "Butter 250 g", "groceries", "2.79"),
    _p(
        "GRO-TEA",
        "Green tea 50 bags",
        "groceries",
        "4.50",
        (("GRO-HONEY", 0.55), ("GRO-LEMON", 0.3)),
    ),
    _p("GRO-HONEY", "Acacia honey 450 g", "groceries", "7.90"),
    _p("GRO-LEMON", "Lemons 1 kg", "groceries", "2.49"),
    _p(
        "GRO-PASTA",
        "Spaghetti 500 g",
        "groceries",
        "1.69",
        (("GRO-SAUCE", 0.75), ("GRO-PARMESAN", 0.5), ("GRO-OLIVEOIL", 0.2)),
        4,
    ),
    _p("GRO-SAUCE", "Tomato sauce 680 g", "groceries", "2.99", max_quantity=3),
    _p("GRO-PARMESAN", "Parmigiano Reggiano 200 g", "groceries", "5.90"),
    _p("GRO-OLIVEOIL", "Extra virgin olive oil 0.75 l", "groceries", "9.90"),
    _p("BEV-WATER", "Mineral water 6x1.5 l", "beverages", "4.20", max_quantity=3),
    _p("BEV-BEER", "Lager 6-pack", "beverages", "7.50", (("GRO-SNACKS", 0.5),), 2),
    _p("GRO-SNACKS", "Salted crisps", "groceries", "2.20", max_quantity=3),
    _p("BEV-WINE", "Graševina white wine", "beverages", "8.90", (("GRO-CHEESE", 0.45),), 3),
    _p("GRO-CHEESE", "Paški sir 250 g", "groceries", "11.90"),
    _p(
        "BBQ-CHARCOAL",
        "Charcoal 3 kg",
        "garden",
        "6.90",
        (("GRO-SAUSAGES", 0.7), ("BEV-BEER", 0.6)),
    ),
    _p("GRO-SAUSAGES", "Grill sausages 1 kg", "groceries", "8.40", max_quantity=2),
    # household, baby, pets: regular refills
    _p("HOU-DETERGENT", "Laundry detergent 3 l", "household", "12.90", (("HOU-SOFTENER", 0.6),)),
    _p("HOU-SOFTENER", "Fabric softener 2 l", "household", "4.90"),
    _p("HOU-DISHTABS", "Dishwasher tablets 60x", "household", "11.50"),
    _p("BAB-DIAPERS", "Diapers size 4, 56x", "baby", "16.90", (("BAB-WIPES", 0.8),), 2),
    _p("BAB-WIPES", "Baby wipes 3x64", "baby", "5.40", max_quantity=3),
    _p("PET-DOGFOOD", "Dry dog food 12 kg", "pets", "39.90", (("PET-TREATS", 0.55),)),
    _p("PET-TREATS", "Dog treats", "pets", "3.90", max_quantity=3),
    _p("PET-CATFOOD", "Cat food 12x85 g", "pets", "8.90", (("PET-LITTER", 0.4),), 2),
    _p("PET-LITTER", "Cat litter 10 l", "pets", "7.90"),
    # electronics with accessories and insurance add-ons: rare, valuable baskets
    _p(
        "ELE-PHONE",
        "Smartphone 128 GB",
        "electronics",
        "449.00",
        (("ACC-CASE", 0.75), ("ACC-SCREEN", 0.55), ("INS-DEVICE", 0.4), ("ACC-CHARGER", 0.3)),
    ),
    _p("ACC-CASE", "Phone case", "accessories", "19.90"),
    _p("ACC-SCREEN", "Tempered glass screen protector", "accessories", "14.90"),
    _p("ACC-CHARGER", "USB-C fast charger 30 W", "accessories", "24.90"),
    _p("INS-DEVICE", "Device insurance, 12 months", "insurance", "59.00"),
    _p(
        "ELE-LAPTOP",
        'Laptop 14" 16 GB',
        "electronics",
        "899.00",
        (("ACC-MOUSE", 0.6), ("ACC-SLEEVE", 0.45), ("INS-WARRANTY2", 0.5)),
    ),
    _p("ACC-MOUSE", "Wireless mouse", "accessories", "29.90"),
    _p("ACC-SLEEVE", 'Laptop sleeve 14"', "accessories", "24.90"),
    _p("INS-WARRANTY2", "Extended warranty, 2 years", "insurance", "79.00"),
    _p(
        "ELE-TV",
        '4K television 55"',
        "electronics",
        "649.00",
        (("ACC-HDMI", 0.7), ("ELE-SOUNDBAR", 0.3), ("INS-WARRANTY3", 0.45)),
    ),
    _p("ACC-HDMI", "HDMI 2.1 cable 2 m", "accessories", "12.90"),
    _p("ELE-SOUNDBAR", "Soundbar 2.1", "electronics", "229.00"),
    _p("INS-WARRANTY3", "Extended warranty, 3 years", "insurance", "99.00"),
    _p(
        "ELE-HEADPHONES",
        "Noise-cancelling headphones",
        "electronics",
        "199.00",
        (("INS-DEVICE", 0.2),),
    ),
    _p(
        "ELE-COFFEEMAKER",
        "Espresso machine",
        "electronics",
        "329.00",
        (("GRO-COFFEE", 0.8), ("INS-WARRANTY2", 0.35)),
    ),
)

BY_SKU: dict[str, Product] = {product.sku: product for product in PRODUCTS}

# Products a basket starts from, grouped by how a customer's taste is described.
TASTES: dict[str, tuple[str, ...]] = {
    "breakfast": ("GRO-COFFEE", "BAK-BREAD", "GRO-TEA", "GRO-MILK"),
    "cooking": ("GRO-PASTA", "GRO-OLIVEOIL", "BAK-BREAD", "GRO-CHEESE"),
    "party": ("BEV-BEER", "BEV-WINE", "BBQ-CHARCOAL", "GRO-SNACKS"),
    "household": ("HOU-DETERGENT", "HOU-DISHTABS", "BEV-WATER"),
    "family": ("BAB-DIAPERS", "BAB-WIPES", "GRO-MILK", "BEV-WATER"),
    "pets": ("PET-DOGFOOD", "PET-CATFOOD", "PET-TREATS"),
    "gadgets": ("ELE-PHONE", "ELE-LAPTOP", "ELE-TV", "ELE-HEADPHONES", "ELE-COFFEEMAKER"),
}
# How likely a basket of a taste is, relative to the others (gadgets are rare).
TASTE_FREQUENCY: dict[str, float] = {
    "breakfast": 1.0,
    "cooking": 1.0,
    "party": 0.6,
    "household": 0.7,
    "family": 0.9,
    "pets": 0.8,
    "gadgets": 0.08,
}

# Contracts and subscriptions with renewal dates (the notifications' reminders).
CONTRACT_PRODUCTS: tuple[str, ...] = (
    "Mobile plan Plus 20 GB",
    "Home internet 500 Mbit/s",
    "Device insurance (monthly)",
    "Loyalty club Gold",
    "Streaming bundle",
    "Home contents insurance",
)

# Local prices: EUR converted and rounded as a shop would show them.
_RATES: dict[str, tuple[Decimal, Decimal]] = {
    "EUR": (Decimal(1), Decimal("0.01")),
    "GBP": (Decimal("0.86"), Decimal("0.01")),
    "CZK": (Decimal("25"), Decimal(1)),
    "PLN": (Decimal("4.3"), Decimal("0.01")),
    "IRR": (Decimal("450000"), Decimal(1000)),
}
CURRENCIES: tuple[str, ...] = tuple(_RATES)


def price_in(product: Product, currency: str) -> Decimal:
    rate, step = _RATES[currency]
    return (product.price_eur * rate).quantize(step, rounding=ROUND_HALF_UP)
