"""Privacy: keyed pseudonyms and PII masking, with known answers (positives and negatives)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pandas as pd
import pytest

from soutui.data.privacy import (
    PrivacyError,
    load_key,
    luhn_ok,
    mask_text,
    pseudonym,
    pseudonymize,
    valid_cn_id,
)

KEY = b"0123456789abcdef0123456789abcdef"


def test_pseudonym_is_keyed_hmac_and_stable() -> None:
    expected = "u_" + hmac.new(KEY, b"alice", hashlib.sha256).hexdigest()[:32]
    assert pseudonym("alice", KEY) == expected
    assert pseudonym("alice", KEY) != pseudonym("alice", KEY[::-1])
    s = pseudonymize(pd.Series(["alice", None, "bob", "alice"]), KEY)
    assert s[0] == s[3] == expected and pd.isna(s[1]) and s[2] != s[0]


def test_key_sources_and_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PrivacyError, match="SOUTUI_PSEUDONYM_KEY"):
        load_key()
    monkeypatch.setenv("SOUTUI_PSEUDONYM_KEY", "short")
    with pytest.raises(PrivacyError, match="too short"):
        load_key()
    monkeypatch.setenv("SOUTUI_PSEUDONYM_KEY", KEY.decode())
    assert load_key() == KEY
    f = tmp_path / "key"
    f.write_bytes(b"another-secret-key-of-32-bytes!!\n")
    assert load_key(f) == b"another-secret-key-of-32-bytes!!"


@pytest.mark.parametrize(
    ("text", "masked", "kind"),
    [
        ("联系我 13812345678 谢谢", "联系我 [PHONE] 谢谢", "phone"),
        ("手机：+86 138-1234-5678。", "手机：[PHONE]。", "phone"),
        ("电话138 1234 5678", "电话[PHONE]", "phone"),
        ("008613912345678", "[PHONE]", "phone"),
        ("call +44 20 7946 0958 today", "call [PHONE] today", "phone"),
        ("+1 (650) 253-0000", "[PHONE]", "phone"),
        ("(555) 123-4567 ext", "[PHONE] ext", "phone"),
        ("mail a.b+tag@example.co.uk now", "mail [EMAIL] now", "email"),
        ("我的邮箱是zhang.san@qq.com", "我的邮箱是[EMAIL]", "email"),
        ("身份证11010519491231002X号", "身份证[ID]号", "cn_id"),
        ("id 440524188001010014", "id [ID]", "cn_id"),
        ("product code 110105194912310021", "product code [ID]", "cn_id"),  # checksum wrong: masked anyway
        ("旧身份证 110105491231002 号", "旧身份证 [ID] 号", "cn_id"),  # 15-digit (1st generation)
        ("visa 4111 1111 1111 1111 exp 12/29", "visa [CARD] exp 12/29", "card"),
        ("mc 5500-0000-0000-0004", "mc [CARD]", "card"),
        ("amex 378282246310005", "amex [CARD]", "card"),
        ("银联卡6217001234567890122", "银联卡[CARD]", "card"),
    ],
)
def test_pii_positives(text: str, masked: str, kind: str) -> None:
    out, counts = mask_text(text)
    assert out == masked
    assert counts[kind] == 1 and sum(counts.values()) == 1


@pytest.mark.parametrize(
    "text",
    [
        "12 pack of AA batteries",
        "Sony SLT-A35K 16.2-Megapixel DSLR",
        "UPC 027242825734",
        "card 4111 1111 1111 1112",  # card-shaped, fails the Luhn check
        "EAN 4006381333931",
        "1920x1080 at 60 Hz, ISO 25,600",
        "price $1,299.99 order 2016-05-09",
        "型号 A13812345678",  # model number glued to letters
        "1234567890123",  # a 13-digit EAN
        "加湿器 3.5L 2 个装",
        "user@localhost",
    ],
)
def test_pii_negatives(text: str) -> None:
    assert mask_text(text) == (text, {})


def test_cn_id_checksum() -> None:
    assert valid_cn_id("11010519491231002X")
    assert valid_cn_id("11010519491231002x")
    assert not valid_cn_id("110105194912310021")
    assert not valid_cn_id("11010519491231002")


def test_luhn() -> None:
    assert luhn_ok("4111 1111 1111 1111") and luhn_ok("378282246310005")
    assert not luhn_ok("4111 1111 1111 1112") and not luhn_ok("4111")
