"""ItemContent: one row per model item, built from the items table in the model's item order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from soutui.features.content import UNKNOWN, ItemContent, titles_for


def test_from_items_aligns_to_the_model_vocabulary() -> None:
    items = pd.DataFrame(
        {
            "item_id": ["b", "a"],  # table order differs from the model's
            "title": ["Blue nail polish", ""],
            "category": ["Nails", "Skin"],
            "brand": [None, "OPI"],
            "price": [-1.0, 12.5],  # a negative price is unknown
        }
    )
    ids = np.array(["a", "b", "zz"], dtype=object)  # zz: not in the catalogue table
    text = np.ones((3, 4), np.float32)
    c = ItemContent.from_items(items, ids, text=text)
    assert c.category is not None and c.category.tolist() == [0, 1, UNKNOWN]
    assert c.brand is not None and c.brand.tolist() == [0, UNKNOWN, UNKNOWN]
    assert c.price is not None and c.price[0] == 12.5 and np.isnan(c.price[1:]).all()
    assert (
        c.attributes is not None and c.attributes[0] != [] and c.attributes[2] == []
    )  # hashed category/brand
    assert c.text is not None and c.text.shape == (3, 4)
    assert titles_for(items, ids) == ["", "Blue nail polish", ""]


def test_missing_table_and_misaligned_rows() -> None:
    empty = ItemContent.from_items(None, np.array(["a"], dtype=object))
    assert empty == ItemContent()
    with pytest.raises(ValueError, match="price has 2 rows but the catalogue has 3 items"):
        ItemContent(price=np.zeros(2)).check(3)
