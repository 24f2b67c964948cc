from fractions import Fraction

import pytest

from mlkube.spec.quantity import Quantity, parse_duration, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("2", Fraction(2)),
        ("0.5", Fraction(1, 2)),
        ("512Mi", Fraction(512 * 2**20)),
        ("2Gi", Fraction(2 * 2**30)),
        ("1G", Fraction(10**9)),
        ("1k", Fraction(1000)),
        ("1e3", Fraction(1000)),
        ("1E-3", Fraction(1, 1000)),
        ("1.5Gi", Fraction(3 * 2**29)),
        ("100n", Fraction(1, 10**7)),
        ("250u", Fraction(1, 4000)),
        ("+3", Fraction(3)),
        ("-1", Fraction(-1)),
        (".5", Fraction(1, 2)),
        ("5.", Fraction(5)),
        ("1Ei", Fraction(2**60)),
        ("1.000000001", Fraction(1000000001, 10**9)),
    ],
)
def test_parse_quantity_is_exact(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text", ["", "m", "1.2.3", "5x", "1KB", "1 Gi", "Gi", "1e", "1ki", "0x10", "e3", "1.5.Mi"]
)
def test_parse_quantity_rejects_non_quantities(text):
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)


def test_quantity_from_yaml_numbers():
    assert Quantity.parse(2).value == 2
    assert Quantity.parse(0.25).value == Fraction(1, 4)
    assert Quantity.parse("1.5m").millis == 2  # CPU rounds up to whole millicores
    assert Quantity.parse("1.5").whole == 2
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        Quantity.parse(True)
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        Quantity.parse(float("nan"))


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        (10, 10),
        ("45", 45),
        (0, 0),
    ],
)
def test_parse_duration(raw, seconds):
    assert parse_duration(raw) == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["", "5 minutes", "1d", "-5s", "5m3", "s", "1h-1m"])
def test_parse_duration_rejects(raw):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(raw)
