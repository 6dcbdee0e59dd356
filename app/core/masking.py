"""Pseudonyms and masks for personal data: the keyed hash that stands in for a resident ID,
and the masked forms of IDs and phones that lists, reports and exports show."""
from __future__ import annotations

import hashlib
import hmac
import re

import pandas as pd

HASH_BYTES = 16


def hash_id(key: bytes, id18: str) -> str:
    """The resident's keyed ID hash: the first 128 bits of HMAC-SHA256 (a truncated HMAC,
    NIST SP 800-107), as 32 hex characters. Two people sharing one by chance: about 10^-23
    for a province's 15 million residents."""
    return hmac.digest(key, id18.encode("ascii"), "sha256")[:HASH_BYTES].hex()


def hash_ids(key: bytes, ids: pd.Series) -> pd.Series:
    """hash_id for many IDs: the same HMAC-SHA256, with the key's inner and outer pads
    hashed once and copied per ID (RFC 2104), which is much faster than hmac.digest."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def one(value: str) -> str:
        h = inner.copy()
        h.update(value.encode("ascii"))
        o = outer.copy()
        o.update(h.digest())
        return o.digest()[:HASH_BYTES].hex()

    return pd.Series([one(v) for v in ids], index=ids.index, dtype=object)


def mask_id(id18: str) -> str:
    """**************123X: the last four only. Region and birth date stay hidden, because the
    product shows birth dates' stand-ins (age, birth year) beside it and region + birth date +
    last four is the whole ID (docs/privacy.md). Values too short to be an ID keep only their
    first two characters."""
    if len(id18) >= 14:
        return "*" * (len(id18) - 4) + id18[-4:]
    return id18[:2] + "*" * max(len(id18) - 2, 0)


def mask_ids(ids: pd.Series) -> pd.Series:
    """mask_id for many valid 18-character IDs."""
    return pd.Series(["*" * 14 + v[-4:] for v in ids], index=ids.index, dtype=object)


MOBILE_RE = r"1[3-9]\d{9}"


def format_phone(phone: str | None) -> str:
    """For display where a call is made: 138 0013 8000 / 0730-8221234."""
    if not phone:
        return ""
    if re.fullmatch(MOBILE_RE, phone):
        return f"{phone[:3]} {phone[3:7]} {phone[7:]}"
    if phone.startswith(("010", "02")):
        return f"{phone[:3]}-{phone[3:]}"
    if phone.startswith("0"):
        return f"{phone[:4]}-{phone[4:]}"
    return phone


def mask_phone(phone: str | None) -> str:
    """For lists and reports: 138****8000."""
    if not phone:
        return ""
    if len(phone) >= 7:
        return phone[:3] + "****" + phone[-4:]
    return "****"


# mobile (1xx xxxx xxxx) and landline (0xxx-xxxxxxx) numbers typed into free text
_PHONE_IN_TEXT = re.compile(
    r"(?<!\d)(1[3-9]\d)[\s-]?(\d{4})[\s-]?(\d{4})(?!\d)"  # mobile
    r"|(?<!\d)(0\d{2,3})[\s-]?(\d{3,4})(\d{4})(?!\d)"  # landline with its area code
)


def scrub_phones(text: str | None) -> str:
    """Free text (a note, a suggestion) with any phone number in it masked."""
    if not text:
        return ""

    def mask(match: re.Match) -> str:
        if match.group(1):
            return f"{match.group(1)}****{match.group(3)}"
        return f"{match.group(4)}-****{match.group(6)}"

    return _PHONE_IN_TEXT.sub(mask, text)


# an ID number anywhere in a text: 18 digits (the last may be X) or the old 15, standing alone
_ID_IN_TEXT = re.compile(r"(?<![0-9])(?:[0-9]{17}[0-9Xx]|[0-9]{15})(?![0-9])")


def scrub_ids(text: str | None) -> str:
    """Text with every 15- or 18-digit ID-like number masked to its last four digits
    (**************123X), whatever column or note it was typed into."""
    if not text:
        return ""
    return _ID_IN_TEXT.sub(lambda m: "*" * (len(m.group()) - 4) + m.group()[-4:], text)


def scrub_free_text(text: str | None) -> str:
    """Free text on its way out (an export, a report): ID numbers and phones masked."""
    return scrub_phones(scrub_ids(text))
