"""Money in the store: ``shared.mongo.decimal128`` gives the same 128 bits as bson's
``Decimal128`` for every value, and ``with_decimals`` stores ``Decimal`` as decimal128 and
reads it back as ``Decimal``."""

from __future__ import annotations

from decimal import Decimal

import pytest
from bson import Decimal128
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.mongo import Database, decimal128, with_decimals


def _same(value: Decimal) -> None:
    """The same encoding, or the same refusal (bson refuses what it would have to round)."""
    try:
        theirs = Decimal128(value)
    except ArithmeticError as refused:
        with pytest.raises(type(refused)):
            decimal128(value)
        return
    ours = decimal128(value)
    assert ours.bid == theirs.bid, value
    assert str(ours) == str(theirs)


@settings(max_examples=2000, deadline=None)
@given(
    sign=st.integers(0, 1),
    significand=st.integers(0, 10**34 - 1),
    exponent=st.integers(-6176, 6111),
)
def test_every_value_the_fast_path_takes_is_encoded_as_bson_encodes_it(
    sign: int, significand: int, exponent: int
) -> None:
    digits = tuple(int(digit) for digit in str(significand))
    _same(Decimal((sign, digits, exponent)))


@settings(max_examples=500, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=2))
def test_money_amounts(value: Decimal) -> None:
    _same(value)


@pytest.mark.parametrize(
    "text",
    [
        "0", "-0", "0.00", "-0E-6176", "1E+6111", "1E-6176", "9" * 34, "-" + "9" * 34 + "E-10",
        "1" + "0" * 33 + "E+6111",
        # Beyond the fast path: bson rounds, clamps or encodes specially; ours goes to it.
        "9" * 35, "1E+6112", "1E-6177", "1.23E+6144", "Infinity", "-Infinity", "NaN",
    ],
)  # fmt: skip
def test_edges_and_what_goes_to_bson(text: str) -> None:
    _same(Decimal(text))


async def test_a_collection_with_decimals_stores_decimal128_and_reads_back_decimal(
    db: Database,
) -> None:
    money = with_decimals(db["money"])
    document = {
        "_id": "p-1",
        "total": Decimal("10.50"),
        "lines": [{"price": Decimal("-0.00"), "quantity": 2}],
        "by_currency": {"EUR": {"spent": Decimal("1E+3")}},
    }
    await money.insert_one(document)

    stored = await db["money"].find_one({"_id": "p-1"})  # as any other client sees it
    assert stored is not None
    assert stored["total"] == Decimal128("10.50")
    assert stored["lines"][0]["price"] == Decimal128("-0.00")
    assert stored["by_currency"]["EUR"]["spent"] == Decimal128("1E+3")
    read = await money.find_one({"_id": "p-1"})
    assert read is not None
    assert read == document
    assert [str(read["total"]), str(read["lines"][0]["price"])] == ["10.50", "-0.00"]
