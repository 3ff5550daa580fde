"""Property: on integers, fractions and decimals, ``score`` is exact rational comparison.

Seeded random pairs, each value written in a random one of its forms (plain, thousands
separators, ``\\frac``, ``a/b``, decimals with trailing zeros, leading sign). Values with
a finite decimal expansion are written exactly, so exact comparison is the whole truth:
equal pairs must score correct and unequal pairs (including near neighbours: n and n+1,
one unit in the last decimal place, a/b and (a+1)/b) must never score correct.
"""

import random
from fractions import Fraction

from rewards.numbers import terminates  # only to choose which forms a value can take
from rewards.verify import score

SEED = 12
PAIRS = 3000


def _group_thousands(digits: str, sep: str) -> str:
    head = len(digits) % 3 or 3
    return sep.join([digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)])


def _write(value: Fraction, rng: random.Random) -> str:
    """One of the ways a solution writes ``value`` exactly."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    forms = []
    if value.denominator == 1:
        digits = str(value.numerator)
        forms += [digits, "0" + digits if rng.random() < 0.1 else digits]
        if len(digits) > 3:
            forms += [_group_thousands(digits, sep) for sep in (",", "{,}", "\\,", " ")]
        forms += [f"\\frac{{{value.numerator * 3}}}{{3}}", f"{digits}.0"]
    else:
        k = rng.randint(1, 4)
        forms += [
            f"\\frac{{{value.numerator * k}}}{{{value.denominator * k}}}",
            f"\\dfrac{{{value.numerator}}}{{{value.denominator}}}",
            f"{value.numerator}/{value.denominator}",
        ]
    if terminates(value) and value.denominator != 1:
        places = _places(value)
        text = f"{float(value):.{places}f}" if places < 15 else None
        if text is not None and Fraction(text) == value:
            forms += [text, text + "0"]
    return sign + rng.choice(forms)


def _places(value: Fraction) -> int:
    places = 0
    while (value * 10**places).denominator != 1:
        places += 1
    return places


def _random_value(rng: random.Random) -> Fraction:
    kind = rng.random()
    if kind < 0.4:
        return Fraction(rng.randint(-(10**7), 10**7))
    if kind < 0.7:
        return Fraction(rng.randint(-999, 999), rng.randint(1, 60))
    return Fraction(rng.randint(-(10**6), 10**6), 10 ** rng.randint(1, 4))  # a terminating decimal


def _neighbour(value: Fraction, rng: random.Random) -> Fraction:
    """An unequal value close to ``value``: the cases a tolerance would wrongly accept."""
    choice = rng.random()
    if choice < 0.3:
        return value + rng.choice([-1, 1])
    if choice < 0.6:
        step = Fraction(1, 10 ** max(_places(value), 1)) if terminates(value) else Fraction(1, 10**4)
        return value + rng.choice([-1, 1]) * step
    if choice < 0.8:
        return Fraction(value.numerator + rng.choice([-1, 1]), value.denominator)
    return _random_value(rng)


def test_equal_values_in_any_form_score_correct():
    rng = random.Random(SEED)
    failures = []
    for _ in range(PAIRS):
        value = _random_value(rng)
        answer, gold = _write(value, rng), _write(value, rng)
        if not score(f"\\boxed{{{answer}}}", gold, timeout_s=10).correct:
            failures.append((answer, gold))
    assert not failures, failures[:10]


def test_unequal_values_never_score_correct():
    rng = random.Random(SEED + 1)
    false_positives = []
    for _ in range(PAIRS):
        value = _random_value(rng)
        other = _neighbour(value, rng)
        if other == value:
            continue
        answer, gold = _write(other, rng), _write(value, rng)
        result = score(f"\\boxed{{{answer}}}", gold, timeout_s=10)
        if result.correct:
            false_positives.append((answer, gold))
    assert not false_positives, false_positives[:10]


def test_decimal_approximations_of_non_terminating_fractions():
    """The one place a tolerance applies: a decimal for a fraction like 1/3. Accepted when
    it is the fraction rounded (or truncated) to its places and within rel_tol 1e-4; the
    expected verdict is computed here from that rule, independently of the verifier."""
    rng = random.Random(SEED + 2)
    checked = 0
    for _ in range(1000):
        value = Fraction(rng.randint(1, 999), rng.choice([3, 6, 7, 9, 11, 12, 13]))
        if terminates(value):
            continue
        places = rng.randint(1, 6)
        rounded = round(value, places)
        text = f"{float(rounded):.{places}f}"
        diff = abs(Fraction(text) - value)
        expected = diff < Fraction(1, 10**places) and diff <= Fraction(1e-4) * max(abs(value), Fraction(text))
        result = score(f"\\boxed{{{text}}}", f"\\frac{{{value.numerator}}}{{{value.denominator}}}", timeout_s=10)
        assert result.correct is expected, (text, value)
        checked += 1
    assert checked > 500
