"""The pure statistics of app/reports/metrics.py against values worked out by hand (or taken
from the literature), no database.

Definitions: ../shared/design/domain.md ("Call outcomes", "Ranking small units fairly") and
the module docstrings / README "Metrics and rankings".
"""
from __future__ import annotations

import math
from fractions import Fraction

import pytest

from app.reports.metrics import (
    Z95,
    Z998,
    AaporRates,
    BetaPrior,
    aapor_rates,
    composite,
    fit_beta_binomial,
    funnel_curve,
    funnel_limits,
    funnel_position,
    wilson,
)

Z = 1.959964  # two-sided 95%, written out
Z_998 = 3.090232  # two-sided 99.8%, written out


def test_z_constants_are_the_normal_quantiles():
    # Φ(1.959964) = 0.975 and Φ(3.090232) = 0.999: checked through erf, not through the module
    assert 0.5 * (1 + math.erf(Z95 / math.sqrt(2))) == pytest.approx(0.975, abs=1e-12)
    assert 0.5 * (1 + math.erf(Z998 / math.sqrt(2))) == pytest.approx(0.999, abs=1e-12)
    assert Z95 == pytest.approx(Z, abs=1e-6)
    assert Z998 == pytest.approx(Z_998, abs=1e-6)


# ---------------------------------------------------------------------------
# Wilson
# ---------------------------------------------------------------------------


def wilson_by_hand(y: int, n: int, z: float = Z) -> tuple[float, float]:
    """(p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n), the closed form of the README."""
    p = y / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return (centre - half) / scale, (centre + half) / scale


def test_wilson_nine_of_ten_is_the_domain_example():
    low, high = wilson(9, 10)
    assert (round(low, 3), round(high, 3)) == (0.596, 0.982)
    # by hand: p = 0.9, z² = 3.841459, z²/2n = 0.192073, z²/4n² = 0.009604, 1 + z²/n = 1.384146
    # centre = (0.9 + 0.192073) / 1.384146 = 0.788987
    # half = 1.959964 · sqrt(0.009 + 0.009604) / 1.384146 = 1.959964 · 0.136396 / 1.384146 = 0.193138
    assert low == pytest.approx(0.788987 - 0.193138, abs=2e-6)
    assert high == pytest.approx(0.788987 + 0.193138, abs=2e-6)


@pytest.mark.parametrize("y, n", [(0, 10), (10, 10), (1, 1), (50, 100), (9, 10), (3, 7)])
def test_wilson_matches_the_closed_form(y, n):
    expected_low, expected_high = wilson_by_hand(y, n)
    low, high = wilson(y, n)
    assert low == pytest.approx(max(0.0, expected_low), abs=1e-6)
    assert high == pytest.approx(min(1.0, expected_high), abs=1e-6)


def test_wilson_interval_contains_the_observed_rate_at_the_ends():
    # The Wilson interval always contains p̂. At p̂ = 0 the closed form gives exactly
    # low = (z²/2n − z·sqrt(z²/4n²))/(1 + z²/n) = 0, and at p̂ = 1 exactly
    # high = (1 + z²/2n + z²/2n)/(1 + z²/n) = 1. So 0/n must start at 0 and n/n end at 1
    # (not 5.6e-17 and 0.9999999999999999, which leave the observed rate outside its interval).
    for n in range(1, 101):
        low, high = wilson(0, n)
        assert low == 0.0, (0, n, low)
        low, high = wilson(n, n)
        assert high == 1.0, (n, n, high)
        for y in range(n + 1):
            low, high = wilson(y, n)
            assert 0.0 <= low <= y / n <= high <= 1.0, (y, n, low, high)


def test_wilson_edge_values_worked_out():
    # 0/10: p = 0, so centre = half = (z²/20)/(1 + z²/10): low = 0, high = (z²/10)/(1 + z²/10)
    z2 = Z * Z
    low, high = wilson(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx((z2 / 10) / (1 + z2 / 10), abs=1e-6)  # 0.277533
    assert high == pytest.approx(0.2775, abs=5e-5)
    # 10/10 is the mirror image: low = 1/(1 + z²/10), high = 1
    low, high = wilson(10, 10)
    assert low == pytest.approx(1 / (1 + z2 / 10), abs=1e-6)  # 0.722467
    assert high == pytest.approx(1.0, abs=1e-12)
    # 1/1: low = 1/(1 + z²) = 1/4.841459 = 0.206549, high = 1
    low, high = wilson(1, 1)
    assert low == pytest.approx(1 / (1 + z2), abs=1e-6)
    assert low == pytest.approx(0.2065, abs=5e-5)
    assert high == pytest.approx(1.0, abs=1e-12)
    # 50/100: symmetric around 0.5: half = z·sqrt(0.0025 + z²/40000)/(1 + z²/100) = 0.096168
    low, high = wilson(50, 100)
    assert low + high == pytest.approx(1.0, abs=1e-12)
    assert high - 0.5 == pytest.approx(Z * math.sqrt(0.0025 + z2 / 40000) / (1 + z2 / 100), abs=1e-6)
    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)


@pytest.mark.parametrize(
    "y, n, low, high",
    [
        # Newcombe RG (1998), Stat Med 17:857-872, Table I, method 3 (score, no continuity correction)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (29, 29, 0.8830, 1.0000),
    ],
)
def test_wilson_literature_values(y, n, low, high):
    got_low, got_high = wilson(y, n)
    assert (round(got_low, 4), round(got_high, 4)) == (low, high)


def test_wilson_no_interviews_is_none():
    assert wilson(0, 0) is None


@pytest.mark.parametrize("y, n", [(11, 10), (-1, 10), (2, 1)])
def test_wilson_invalid_counts_raise(y, n):
    with pytest.raises(ValueError):
        wilson(y, n)


def test_wilson_other_z():
    # z = 3.090232 (99.8%): wider than the 95% interval, closed form again
    low, high = wilson(9, 10, z=Z_998)
    expected = wilson_by_hand(9, 10, Z_998)
    assert low == pytest.approx(expected[0], abs=1e-6)
    assert high == pytest.approx(expected[1], abs=1e-6)
    assert low < wilson(9, 10)[0] and high > wilson(9, 10)[1]


# ---------------------------------------------------------------------------
# AAPOR
# ---------------------------------------------------------------------------


def test_aapor_worked_example_with_every_class():
    counts = {"I": 12, "P": 3, "R": 5, "NC": 4, "O": 2, "UH": 6, "UO": 1, "NE": 7}
    rates = aapor_rates(counts)
    # RR1's denominator: (I+P) + (R+NC+O) + (UH+UO) = (12+3) + (5+4+2) + (6+1) = 15 + 11 + 7 = 33
    # contacts: (I+P) + R + O = 15 + 5 + 2 = 22
    assert rates.RR1 == pytest.approx(12 / 33)  # 0.3636
    assert rates.RR2 == pytest.approx(15 / 33)  # 0.4545
    assert rates.COOP1 == pytest.approx(12 / 22)  # 0.5455
    assert rates.REF1 == pytest.approx(5 / 33)  # 0.1515
    assert rates.CON1 == pytest.approx(22 / 33)  # 0.6667
    assert (rates.I, rates.P, rates.R, rates.NC, rates.O, rates.UH, rates.UO, rates.NE) == (12, 3, 5, 4, 2, 6, 1, 7)
    assert rates.cases == 40


def test_aapor_not_eligible_is_left_out():
    base = {"I": 12, "P": 3, "R": 5, "NC": 4, "O": 2, "UH": 6, "UO": 1}
    without = aapor_rates(base)
    with_ne = aapor_rates({**base, "NE": 50})
    for name in ("RR1", "RR2", "COOP1", "REF1", "CON1"):
        assert getattr(with_ne, name) == getattr(without, name)
    assert with_ne.NE == 50 and without.NE == 0
    assert with_ne.cases == without.cases + 50


def test_aapor_missing_classes_count_zero():
    # I = 8, R = 2 only: denominator 10, contacts 10
    rates = aapor_rates({"I": 8, "R": 2})
    assert (rates.RR1, rates.RR2, rates.COOP1, rates.REF1, rates.CON1) == (0.8, 0.8, 0.8, 0.2, 1.0)


def test_aapor_all_zero_gives_no_rates():
    for counts in ({}, {k: 0 for k in ("I", "P", "R", "NC", "O", "UH", "UO", "NE")}, {"NE": 4}):
        rates = aapor_rates(counts)
        assert isinstance(rates, AaporRates)
        assert (rates.RR1, rates.RR2, rates.COOP1, rates.REF1, rates.CON1) == (None, None, None, None, None)


def test_aapor_no_contact_at_all():
    # only unknown eligibility and non-contact: RR1 = 0/7, no contact so COOP1 has no denominator
    rates = aapor_rates({"UH": 5, "NC": 2})
    assert rates.RR1 == 0 and rates.RR2 == 0 and rates.REF1 == 0 and rates.CON1 == 0
    assert rates.COOP1 is None


def test_aapor_unknown_class_raises():
    with pytest.raises(ValueError):
        aapor_rates({"I": 3, "X": 1})
    with pytest.raises(ValueError):
        aapor_rates({"i": 3})  # the letters are case-sensitive


# ---------------------------------------------------------------------------
# Empirical Bayes (beta-binomial, method of moments)
# ---------------------------------------------------------------------------

UNITS = [(9, 10), (5, 10), (20, 30), (1, 2)]


def test_fit_beta_binomial_by_hand():
    prior = fit_beta_binomial(UNITS)
    # k = 4, N = 10 + 10 + 30 + 2 = 52, Σy = 9 + 5 + 20 + 1 = 35
    mu = Fraction(35, 52)  # 0.673077
    # S = Σ n·(y/n − μ)²
    #   = 10·(9/10 − 35/52)² + 10·(5/10 − 35/52)² + 30·(20/30 − 35/52)² + 2·(1/2 − 35/52)²
    #   = 10·(59/260)² + 10·(−9/52)² + 30·(−1/156)² + 2·(−9/52)²
    #   = 3481/6760 + 810/2704 + 30/24336 + 162/2704 = 683/780 = 0.875641
    s = (10 * Fraction(59, 260) ** 2 + 10 * Fraction(9, 52) ** 2 + 30 * Fraction(1, 156) ** 2
         + 2 * Fraction(9, 52) ** 2)
    assert s == Fraction(683, 780)
    # μ(1−μ) = 35/52 · 17/52 = 595/2704; S/(μ(1−μ)) = 683/780 · 2704/595 = 35516/8925 = 3.979384
    assert mu * (1 - mu) == Fraction(595, 2704)
    assert s / (mu * (1 - mu)) == Fraction(35516, 8925)
    # N − Σn²/N − (k−1) = 52 − (100 + 100 + 900 + 4)/52 − 3 = 400/13 − 3 = 361/13 = 27.769231
    # (E[S] = π(1−π)[(k−1)(1−ρ) + ρ(N − Σn²/N)] for the beta-binomial, hence the −(k−1))
    spread = 52 - Fraction(1104, 52) - 3
    assert spread == Fraction(361, 13)
    # ρ̂ = (3.979384 − 3) / 27.769231 = (8741/8925)·(13/361) = 113633/3221925 = 0.0352687
    rho = (Fraction(35516, 8925) - 3) / spread
    assert rho == Fraction(113633, 3221925)
    # α+β = 1/ρ̂ − 1 = 3221925/113633 − 1 = 3108292/113633 = 27.353779
    strength = 1 / rho - 1
    assert strength == Fraction(3108292, 113633)
    # α = μ(α+β) = 18.411198, β = (1−μ)(α+β) = 8.942582
    alpha, beta = mu * strength, (1 - mu) * strength
    assert float(alpha) == pytest.approx(18.411198, abs=1e-6)
    assert float(beta) == pytest.approx(8.942582, abs=1e-6)

    assert prior.mean == pytest.approx(float(mu), rel=1e-12)
    assert prior.rho == pytest.approx(float(rho), rel=1e-9)
    assert prior.alpha == pytest.approx(float(alpha), rel=1e-9)
    assert prior.beta == pytest.approx(float(beta), rel=1e-9)
    assert prior.alpha + prior.beta == pytest.approx(float(strength), rel=1e-9)

    # posterior means (y + α)/(n + α + β), n + α + β = n + 27.353779
    expected = {
        (9, 10): (9 + 18.411198) / (10 + 27.353779),  # 0.733827
        (5, 10): (5 + 18.411198) / (10 + 27.353779),  # 0.626742
        (20, 30): (20 + 18.411198) / (30 + 27.353779),  # 0.669724
        (1, 2): (1 + 18.411198) / (2 + 27.353779),  # 0.661284
    }
    for (y, n), value in expected.items():
        assert prior.posterior_mean(y, n) == pytest.approx(value, abs=1e-6)
    assert prior.posterior_mean(9, 10) == pytest.approx(0.733827, abs=1e-6)
    # shrinkage: each estimate lies between the unit's own rate and μ
    for y, n in UNITS:
        low, high = sorted((y / n, float(mu)))
        assert low <= prior.posterior_mean(y, n) <= high
    # a unit with no interview gets the prior mean
    assert prior.posterior_mean(0, 0) == pytest.approx(float(mu))


def test_fit_ignores_units_without_interviews():
    with_empty = fit_beta_binomial(UNITS + [(0, 0), (0, 0)])
    assert with_empty == fit_beta_binomial(UNITS)


def test_fit_nothing_to_fit_is_none():
    assert fit_beta_binomial([]) is None
    assert fit_beta_binomial([(0, 0), (0, 0)]) is None


def test_fit_no_excess_spread_gives_an_infinite_prior():
    # 8/10, 16/20, 4/5: every rate is 0.8, S = 0, ρ̂ = (0 − 2)/(…) < 0
    prior = fit_beta_binomial([(8, 10), (16, 20), (4, 5)])
    assert math.isinf(prior.alpha) and math.isinf(prior.beta)
    assert prior.rho == 0.0
    assert prior.mean == pytest.approx(0.8)
    for y, n in [(8, 10), (16, 20), (4, 5), (0, 3), (30, 30)]:
        assert prior.posterior_mean(y, n) == pytest.approx(0.8)


def test_fit_less_spread_than_chance_gives_an_infinite_prior():
    # 4/5 and 3/4: μ = 7/9, S = 5·(1/45)² + 4·(1/36)² = 1/405 + 1/324 = 1/180,
    # S/(μ(1−μ)) = (1/180)/(14/81) = 0.032 < k − 1 = 1, so ρ̂ < 0
    prior = fit_beta_binomial([(4, 5), (3, 4)])
    assert math.isinf(prior.alpha)
    assert prior.posterior_mean(4, 5) == prior.posterior_mean(3, 4) == pytest.approx(7 / 9)


def test_fit_all_successes():
    prior = fit_beta_binomial([(10, 10), (3, 3), (1, 1)])
    assert prior.mean == 1.0
    assert prior.posterior_mean(10, 10) == 1.0
    assert prior.posterior_mean(1, 1) == 1.0


def test_fit_all_failures():
    prior = fit_beta_binomial([(0, 10), (0, 3)])
    assert prior.mean == 0.0
    assert prior.posterior_mean(0, 3) == 0.0


def test_fit_single_unit():
    prior = fit_beta_binomial([(7, 10)])
    assert prior.mean == pytest.approx(0.7)
    assert math.isinf(prior.alpha)
    assert prior.posterior_mean(7, 10) == pytest.approx(0.7)


def test_fit_extreme_spread_is_clamped():
    # 0/10 and 10/10: μ = 1/2, S = 10·¼ + 10·¼ = 5, S/(μ(1−μ)) = 20, N − Σn²/N = 20 − 10 = 10,
    # ρ̂ = (20 − 1)/10 = 1.9, kept at 0.999999: α + β = 1/0.999999 − 1 = 1.000001e-6
    prior = fit_beta_binomial([(0, 10), (10, 10)])
    assert prior.rho == pytest.approx(0.999999)
    assert prior.alpha + prior.beta == pytest.approx(1 / 0.999999 - 1, rel=1e-6)
    assert prior.alpha == pytest.approx(prior.beta)
    # next to no pull: each unit keeps its own rate
    assert prior.posterior_mean(10, 10) == pytest.approx(1.0, abs=1e-6)
    assert prior.posterior_mean(0, 10) == pytest.approx(0.0, abs=1e-6)


def test_posterior_mean_of_a_given_prior():
    prior = BetaPrior(alpha=8.0, beta=2.0, mean=0.8, rho=1 / 11)
    # (y + α)/(n + α + β): 3/3 -> 11/13, 57/60 -> 65/70, 0/0 -> 8/10
    assert prior.posterior_mean(3, 3) == pytest.approx(11 / 13)
    assert prior.posterior_mean(57, 60) == pytest.approx(65 / 70)
    assert prior.posterior_mean(0, 0) == pytest.approx(0.8)
    # the small perfect unit ranks below the large 95% one
    assert prior.posterior_mean(3, 3) < prior.posterior_mean(57, 60)


# ---------------------------------------------------------------------------
# Funnel plot
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 4, 10, 25, 100, 400, 10_000])
@pytest.mark.parametrize("overall", [0.5, 0.8, 0.95])
@pytest.mark.parametrize("z", [Z, Z_998])
def test_funnel_limits_formula(overall, n, z):
    half = z * math.sqrt(overall * (1 - overall) / n)
    low, high = funnel_limits(overall, n, z)
    assert low == pytest.approx(max(0.0, overall - half), abs=1e-6)
    assert high == pytest.approx(min(1.0, overall + half), abs=1e-6)
    assert 0.0 <= low <= overall <= high <= 1.0


def test_funnel_limits_worked_values():
    # p = 0.8, n = 100: sqrt(0.16/100) = 0.04
    assert funnel_limits(0.8, 100, Z95) == pytest.approx((0.8 - 0.078399, 0.8 + 0.078399), abs=1e-6)
    assert funnel_limits(0.8, 100, Z998) == pytest.approx((0.8 - 0.123609, 0.8 + 0.123609), abs=1e-6)
    # p = 0.8, n = 1: 0.8 ± 1.959964·0.4 = 0.8 ± 0.783986 -> (0.016014, 1.583986 kept at 1)
    assert funnel_limits(0.8, 1, Z95) == pytest.approx((0.016014, 1.0), abs=1e-6)
    # p = 0.5, n = 1, 99.8%: 0.5 ± 1.545 -> both ends clamped
    assert funnel_limits(0.5, 1, Z998) == (0.0, 1.0)
    # p = 0 or 1: no width
    assert funnel_limits(1.0, 10, Z95) == (1.0, 1.0)
    assert funnel_limits(0.0, 10, Z95) == (0.0, 0.0)
    # no interview: the whole range
    assert funnel_limits(0.8, 0, Z95) == (0.0, 1.0)


@pytest.mark.parametrize(
    "rate, expected",
    [
        # overall 0.8, n = 100: 95% limits 0.721601 / 0.878399; 99.8% limits 0.676391 / 0.923609
        (0.95, "high99"),
        (0.924, "high99"),
        (0.923, "high95"),
        (0.90, "high95"),
        (0.879, "high95"),
        (0.878, "within"),
        (0.80, "within"),
        (0.722, "within"),
        (0.721, "low95"),
        (0.70, "low95"),
        (0.677, "low95"),
        (0.676, "low99"),
        (0.60, "low99"),
    ],
)
def test_funnel_position(rate, expected):
    assert funnel_position(rate, 0.8, 100) == expected


def test_funnel_position_depends_on_n():
    # 0.6 against 0.8: at n = 4 the 99.8% lower limit is 0.8 − 3.090232·0.2 = 0.181954 -> within;
    # n = 16: 95% lower 0.8 − 1.959964·0.1 = 0.604004, 99.8% lower 0.490977 -> low95;
    # n = 64: 99.8% lower 0.8 − 3.090232·0.05 = 0.645488 -> low99
    assert funnel_position(0.6, 0.8, 4) == "within"
    assert funnel_position(0.6, 0.8, 16) == "low95"
    assert funnel_position(0.6, 0.8, 64) == "low99"


def test_funnel_curve_narrows_as_n_grows():
    rows = funnel_curve(0.8, 500)
    ns = [r["n"] for r in rows]
    assert ns[0] == 1 and ns[-1] == 500
    assert ns == sorted(set(ns))  # strictly increasing
    assert len(rows) <= 60
    for a, b in zip(rows, rows[1:]):
        assert b["hi95"] <= a["hi95"] and b["hi99"] <= a["hi99"]
        assert b["lo95"] >= a["lo95"] and b["lo99"] >= a["lo99"]
    for r in rows:
        assert r["lo99"] <= r["lo95"] <= 0.8 <= r["hi95"] <= r["hi99"]
        expected = funnel_limits(0.8, r["n"], Z95)
        assert (r["lo95"], r["hi95"]) == expected
        half = Z * math.sqrt(0.16 / r["n"])
        assert r["lo95"] == pytest.approx(max(0.0, 0.8 - half), abs=1e-6)
    # the last point: 0.8 ± 1.959964·sqrt(0.16/500) = 0.8 ± 1.959964·0.0178885 = 0.8 ± 0.0350609
    assert rows[-1]["lo95"] == pytest.approx(0.764939, abs=1e-6)
    assert rows[-1]["hi95"] == pytest.approx(0.835061, abs=1e-6)


def test_funnel_curve_small():
    assert funnel_curve(0.8, 0) == []
    rows = funnel_curve(0.8, 1)
    assert [r["n"] for r in rows] == [1]
    rows = funnel_curve(0.8, 3)
    assert [r["n"] for r in rows] == [1, 2, 3]


# ---------------------------------------------------------------------------
# Composite
# ---------------------------------------------------------------------------

WEIGHTS = {"score": 0.4, "aware": 0.15, "knows_doctor": 0.15, "fulfilment": 0.15, "effect": 0.15}


def test_composite_all_present():
    values = {"score": 80.0, "aware": 90.0, "knows_doctor": 60.0, "fulfilment": 50.0, "effect": 70.0}
    # 0.4·80 + 0.15·(90 + 60 + 50 + 70) = 32 + 40.5 = 72.5
    assert composite(values, WEIGHTS) == pytest.approx(72.5)


def test_composite_renormalises_over_present_values():
    values = {"score": 80.0, "aware": 90.0, "knows_doctor": 60.0, "fulfilment": None, "effect": 70.0}
    # (0.4·80 + 0.15·(90 + 60 + 70)) / 0.85 = (32 + 33) / 0.85 = 76.470588
    assert composite(values, WEIGHTS) == pytest.approx(65 / 0.85)
    # a key absent altogether counts as missing too
    del values["fulfilment"]
    assert composite(values, WEIGHTS) == pytest.approx(65 / 0.85)
    # only one present: it is the composite
    assert composite({"aware": 42.0}, WEIGHTS) == pytest.approx(42.0)


def test_composite_ignores_unweighted_and_zero_weight_values():
    values = {"score": 80.0, "aware": 90.0, "renew": 0.0, "satisfaction": 10.0}
    # renew and satisfaction have no weight; knows_doctor weighs 0 here
    weights = {"score": 0.4, "aware": 0.15, "knows_doctor": 0.0}
    assert composite({**values, "knows_doctor": 0.0}, weights) == pytest.approx((0.4 * 80 + 0.15 * 90) / 0.55)


def test_composite_zero_is_a_value_not_missing():
    values = {"score": 0.0, "aware": 100.0, "knows_doctor": None, "fulfilment": None, "effect": None}
    # (0.4·0 + 0.15·100)/0.55 = 27.272727
    assert composite(values, WEIGHTS) == pytest.approx(15 / 0.55)


def test_composite_all_missing_is_none():
    assert composite({}, WEIGHTS) is None
    assert composite({k: None for k in WEIGHTS}, WEIGHTS) is None
    assert composite({"score": 50.0}, {"score": 0.0}) is None
