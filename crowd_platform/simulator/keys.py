"""Synthetic MSISDNs and the operators' daily HMAC keys.

Keys and MSISDNs live in memory only: nothing here writes them anywhere. The daily key of an
operator is derived from the seed, so a re-run with the same seed gives the same digests.
The operator-side tool (``crowd-platform pseudonymize``) uses the same normalisation and HMAC,
so a drop made by either is indistinguishable.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date

import numpy as np

# Real Indonesian mobile prefixes (after the 62 country code) per operator, so a raw-MSISDN
# fault looks like the real thing. Operators not listed get the Axis range.
MSISDN_PREFIXES: dict[str, tuple[str, ...]] = {
    "telkomsel": ("811", "812", "813", "821", "822", "823", "851", "852", "853"),
    "indosat": ("814", "815", "816", "855", "856", "857", "858"),
    "xl": ("817", "818", "819", "859", "877", "878"),
    "tri": ("895", "896", "897", "898", "899"),
    "smartfren": ("881", "882", "883", "884", "885", "886", "887", "888", "889"),
}
_FALLBACK_PREFIXES = ("831", "832", "833", "838")
# Short operator names used in key ids ("tsel-20200327", as in docs/design.md section 6).
KEY_ID_PREFIX = {"telkomsel": "tsel", "indosat": "isat", "xl": "xl", "tri": "tri", "smartfren": "fren"}

# Odd and not a multiple of 5, so i -> i * _BODY_MULTIPLIER mod 10^8 is a bijection: distinct
# subscribers on one prefix never share a number.
_BODY_MULTIPLIER = 73_939_133
_BODY_MODULUS = 10**8
_SEPARATORS = re.compile(r"[\s\-().]")


def key_id(operator: str, day: date) -> str:
    return f"{KEY_ID_PREFIX.get(operator, operator[:4])}-{day:%Y%m%d}"


def daily_key(seed: int, operator: str, day: date) -> bytes:
    """The operator's HMAC key for one UTC day, derived from the seed (never stored)."""
    master = hashlib.sha256(f"crowd-platform-simulator/{seed}".encode()).digest()
    return hmac.digest(master, f"{operator}/{day.isoformat()}".encode(), "sha256")


def msisdns(indices: np.ndarray, operators: list[str], operator_of: np.ndarray, seed: int) -> np.ndarray:
    """Normalised MSISDNs ("628..." without '+') for subscriber indices; unique per subscriber."""
    offset = int.from_bytes(hashlib.sha256(f"msisdn/{seed}".encode()).digest()[:4], "big")
    bodies = (indices.astype(np.int64) * _BODY_MULTIPLIER + offset) % _BODY_MODULUS
    result = np.empty(len(indices), dtype=object)
    for code, operator in enumerate(operators):
        mask = operator_of[indices] == code
        prefixes = MSISDN_PREFIXES.get(operator, _FALLBACK_PREFIXES)
        chosen = np.asarray(prefixes)[indices[mask] % len(prefixes)]
        result[mask] = [f"62{prefix}{body:08d}" for prefix, body in zip(chosen, bodies[mask])]
    return result


@dataclass(frozen=True)
class MsisdnRule:
    """How one country's mobile numbers are written, and their one normalised form.

    The normalised form is the international number without '+' or '00': country code then
    national significant number (``62812...``, ``97798...``). Accepted notations: ``+CC ...``,
    ``00CC ...``, ``CC...``, the national form with the trunk prefix (``0812...``) and, where
    ``bare_national`` (numbers are dialled without a trunk prefix, as in Nepal), the national
    number alone. Spaces, hyphens, dots and parentheses are ignored.
    """

    country_code: str
    name: str
    national: re.Pattern[str]        # the national significant number
    trunk_prefix: str | None = "0"
    bare_national: bool = False

    def normalise(self, raw: str) -> str:
        """The normalised number; ValueError (never quoting the input: it may be a phone number)."""
        digits = _SEPARATORS.sub("", str(raw).strip())
        explicit = digits.startswith(("+", "00"))
        digits = digits[1:] if digits.startswith("+") else digits[2:] if explicit else digits
        if not digits.isdigit() or not digits.isascii():
            raise ValueError(f"not a valid {self.name} mobile number")
        candidates = [digits[len(self.country_code):]] if digits.startswith(self.country_code) else []
        if not explicit:
            if self.trunk_prefix and digits.startswith(self.trunk_prefix):
                candidates.append(digits[len(self.trunk_prefix):])
            elif self.bare_national:
                candidates.append(digits)
        for national in candidates:
            if self.national.fullmatch(national):
                return self.country_code + national
        raise ValueError(f"not a valid {self.name} mobile number")


# Country code -> its mobile numbering. Others get the generic E.164 rule of msisdn_rule().
MSISDN_RULES: dict[str, MsisdnRule] = {
    # Indonesia: mobile numbers are 8 + 7..12 digits, written 0812... at home.
    "62": MsisdnRule("62", "Indonesian (+62)", re.compile(r"8[0-9]{7,12}")),
    # Nepal: mobile numbers are 10 digits starting with 9, dialled without a trunk prefix.
    "977": MsisdnRule("977", "Nepali (+977)", re.compile(r"9[0-9]{9}"), bare_national=True),
}
DEFAULT_MSISDN_COUNTRY = "62"


def msisdn_rule(country_code: str = DEFAULT_MSISDN_COUNTRY) -> MsisdnRule:
    """The rule for a country calling code (``62``, ``977``; a leading '+' is ignored).

    Codes without a dedicated rule get E.164: international forms, or the national form with
    trunk prefix 0; the whole number at most 15 digits."""
    code = str(country_code).strip().removeprefix("+")
    if not re.fullmatch(r"[1-9][0-9]{0,2}", code):
        raise ValueError("a country calling code is 1 to 3 digits, not starting with 0")
    if code in MSISDN_RULES:
        return MSISDN_RULES[code]
    return MsisdnRule(code, f"+{code}", re.compile(rf"[1-9][0-9]{{5,{14 - len(code)}}}"))


def normalise_string_id(raw: str) -> str:
    """Any string identifier: trimmed, otherwise used as is; ValueError when empty."""
    value = str(raw).strip()
    if not value:
        raise ValueError("empty identifier")
    return value


def normalise_msisdn(raw: str, country_code: str = DEFAULT_MSISDN_COUNTRY) -> str:
    """'+62 812-3456-7890', '0812...' and '62812...' all become '62812...'; else ValueError.

    Other countries by calling code (``msisdn_rule``). The error message never repeats the input:
    it may be a phone number.
    """
    return msisdn_rule(country_code).normalise(raw)


def pseudonymize(key: bytes, normalised_id: str) -> str:
    """64 lowercase hex: HMAC-SHA256 of a normalised identifier (UTF-8; MSISDNs are ASCII digits) under the key."""
    return hmac.new(key, normalised_id.encode("utf-8"), hashlib.sha256).hexdigest()


def digests_for(key: bytes, numbers: np.ndarray) -> np.ndarray:
    """Digests of many normalised MSISDNs as a (n, 32) uint8 array.

    Not numpy's "S32": it strips trailing zero bytes, which would shorten one key in 256.
    """
    joined = b"".join(hmac.digest(key, number.encode("ascii"), "sha256") for number in numbers)
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(numbers), 32)
