"""`crowd-platform pseudonymize`: the identifier rule is configurable (Indonesian MSISDN by
default, other country codes, any string id); one person in any notation gets one digest, and an
unusable value is reported by row number, never echoed."""

from __future__ import annotations

import csv
import hashlib
import hmac

import pytest

from crowd_platform.cli import main
from crowd_platform.simulator.keys import msisdn_rule, normalise_msisdn, normalise_string_id, pseudonymize

KEY = bytes(range(32))


def _expected(value: str) -> str:
    return hmac.new(KEY, value.encode("utf-8"), hashlib.sha256).hexdigest()


def _run(tmp_path, values: list[str], *options: str, column: str = "msisdn") -> tuple[int, list[str]]:
    key_file = tmp_path / "key.hex"
    key_file.write_text(KEY.hex())
    source, output = tmp_path / "raw.csv", tmp_path / "out.csv"
    with open(source, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([column, "cell"])
        writer.writerows([value, f"510-10-1-{i}"] for i, value in enumerate(values))
    code = main(["pseudonymize", "--key-file", str(key_file), "--input", str(source), "--output", str(output),
                 "--column", column, *options])
    if code != 0:
        return code, []
    with open(output, newline="", encoding="utf-8") as handle:
        return code, [row[column] for row in csv.DictReader(handle)]


@pytest.mark.parametrize("raw", ["+62 812-3456-7890", "+6281234567890", "0062 812 3456 7890", "62812-3456-7890",
                                 "0812-3456-7890", "(0812) 3456.7890", " 081234567890 "])
def test_indonesian_notations_normalise_alike(raw):
    assert normalise_msisdn(raw) == "6281234567890"


@pytest.mark.parametrize("raw", ["+977 981-2345678", "977 9812345678", "00977-98-1234-5678", "9812345678",
                                 "098 1234 5678"])
def test_nepali_notations_normalise_alike(raw):
    assert normalise_msisdn(raw, "977") == "9779812345678"


@pytest.mark.parametrize("country,raw", [
    ("62", "81234567890"),        # no trunk prefix nor country code: ambiguous at home
    ("62", "+62 0812 3456 7890"),  # trunk prefix after the country code
    ("62", "+977 9812345678"),    # another country
    ("62", "0212345678"),         # Jakarta landline
    ("62", "0812-3456-789O"),     # letter O
    ("62", ""),
    ("977", "+62 812 3456 7890"),
    ("977", "981234567"),         # nine digits
    ("977", "014123456"),         # Kathmandu landline
])
def test_unparseable_numbers_are_refused_without_echo(country, raw):
    with pytest.raises(ValueError) as error:
        normalise_msisdn(raw, country)
    digits = "".join(ch for ch in raw if ch.isdigit())
    assert len(digits) < 6 or digits not in str(error.value)


def test_other_country_codes_follow_e164():
    rule = msisdn_rule("+44")
    assert rule.normalise("+44 7700 900123") == rule.normalise("07700 900123") == rule.normalise("0044-7700-900123") == "447700900123"
    with pytest.raises(ValueError):
        rule.normalise("7700900123")  # national without trunk prefix: could be anything
    for bad in ("0", "1234", "abc", ""):
        with pytest.raises(ValueError):
            msisdn_rule(bad)


def test_string_ids_are_trimmed_and_used_as_is():
    assert normalise_string_id("  IMSI-510100123456789\t") == "IMSI-510100123456789"
    assert normalise_string_id("sub/ä 1") == "sub/ä 1"
    with pytest.raises(ValueError):
        normalise_string_id("   ")


def test_cli_default_rule_one_digest_per_person(tmp_path, capsys):
    code, digests = _run(tmp_path, ["+62 812-3456-7890", "081234567890", "6281234567890", "0857 1111 2222"])
    assert code == 0
    assert digests[:3] == [_expected("6281234567890")] * 3
    assert digests[3] == _expected("6285711112222") == pseudonymize(KEY, "6285711112222")
    printed = capsys.readouterr()
    assert "812" not in printed.out + printed.err and KEY.hex() not in printed.out + printed.err


def test_cli_nepal(tmp_path):
    code, digests = _run(tmp_path, ["+977 981-2345678", "9812345678", "00977 98 1234 5678"], "--msisdn-country", "977")
    assert code == 0 and digests == [_expected("9779812345678")] * 3


def test_cli_string_ids(tmp_path):
    code, digests = _run(tmp_path, ["  user-42 ", "user-42", "User-42"], "--id-rule", "string", column="subscriber")
    assert code == 0
    assert digests[0] == digests[1] == _expected("user-42") and digests[2] == _expected("User-42")


@pytest.mark.parametrize("values,options,reason", [
    (["081234567890", "0812-3456-7890", "+62 0857 555 1234"], (), "row 3: column 'msisdn' is not a valid Indonesian (+62) mobile number"),
    (["9812345678", "0812 3456 7890"], ("--msisdn-country", "977"), "row 2: column 'msisdn' is not a valid Nepali (+977) mobile number"),
    (["a", "  "], ("--id-rule", "string"), "row 2: column 'msisdn' is not a non-empty identifier"),
])
def test_cli_unparseable_value_one_line_by_row_number(tmp_path, capsys, values, options, reason):
    code, _ = _run(tmp_path, values, *options)
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip() == f"crowd-platform pseudonymize: {reason}"
    assert "555" not in err and "3456" not in err
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / ".out.csv.tmp").exists()


@pytest.mark.parametrize("options,reason", [
    (("--msisdn-country", "0977"), "--msisdn-country: a country calling code is 1 to 3 digits, not starting with 0"),
    (("--id-rule", "string", "--msisdn-country", "977"), "--msisdn-country applies to --id-rule msisdn only"),
])
def test_cli_bad_rule_options(tmp_path, capsys, options, reason):
    code, _ = _run(tmp_path, ["081234567890"], *options)
    assert code == 2 and capsys.readouterr().err.strip() == f"crowd-platform pseudonymize: {reason}"
