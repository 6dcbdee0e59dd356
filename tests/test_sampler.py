"""Tests of the pure stratified sampler, app/draws/sampler.py (algorithm "lottery-v1").

No database: everything here calls the sampler's functions directly. The properties are
checked against independent re-statements of the module docstring (lottery order, quotas,
the within-team rule), not against the sampler's own helpers, except where a test says so.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import statistics
import struct
from collections import Counter, defaultdict
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.draws.sampler import (
    TEAM_DOMAIN,
    DrawParams,
    Pick,
    allocate,
    derive_seed,
    draw_institution,
    eligible_hash,
    lottery,
    mix64,
    pack_eligible,
    team_lottery,
    unpack_eligible,
)

M64 = 2**64
# the whole file runs in about 20 s; the two tests that check the allocation rules get more examples
PROPERTY = settings(max_examples=120, deadline=None, database=None)
PROPERTY_MORE = settings(max_examples=250, deadline=None, database=None)


# ---------------------------------------------------------------------------------------------
# independent reference pieces
# ---------------------------------------------------------------------------------------------


def ref_mix64(x: int) -> int:
    """SplitMix64's finaliser written out from the published constants, plain Python ints."""
    x %= M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) % M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) % M64
    return x ^ (x >> 31)


def ref_lottery(seed: int, rid: int) -> int:
    return ref_mix64(ref_mix64(rid % M64) ^ (seed % M64))


def lottery_order(seed: int, ids) -> list[int]:
    """ids sorted by lottery number, ties by id (docstring step 2)."""
    return sorted(ids, key=lambda r: (ref_lottery(seed, r), r))


def ideal_quotas(sizes: dict[int, int], slots: int) -> dict[int, Fraction]:
    """Each non-empty team's exact quota when slots >= number of teams and slots < total.

    Uncapped: 1 + r * s_t / S (r = slots - T, S = total size). A team whose quota reaches its
    size is capped: it gets all its residents, and the rest is shared in proportion to size
    among the other teams, i.e. every uncapped team gets 1 + lam * s_t with one common lam
    chosen so that the quotas add up to the slots (water-filling). Raising lam only ever adds
    capped teams, so iterating until nothing new is capped gives the fixed point.
    """
    teams = [t for t, s in sizes.items() if s > 0]
    assert len(teams) <= slots < sum(sizes[t] for t in teams)
    capped: set[int] = set()
    while True:
        uncapped = [t for t in teams if t not in capped]
        rest = slots - sum(sizes[t] for t in capped) - len(uncapped)
        lam = Fraction(rest, sum(sizes[t] for t in uncapped))
        newly = {t for t in uncapped if 1 + lam * sizes[t] >= sizes[t]}
        if not newly:
            break
        capped |= newly
    quotas = {
        t: Fraction(sizes[t]) if t in capped else 1 + lam * sizes[t] for t in teams
    }
    assert sum(quotas.values()) == slots
    return quotas


def expected_team_take(
    ordered_ids: list[int], is_key: dict[int, bool], k: int, share
) -> set[int]:
    """Docstring step 4 for one team; ordered_ids is the team's free residents in lottery order."""
    if k >= len(ordered_ids):
        return set(ordered_ids)
    if not share:
        return set(ordered_ids[:k])
    need = math.ceil(share * k)
    keys_first = [r for r in ordered_ids if is_key[r]][:need]
    others = [r for r in ordered_ids if r not in set(keys_first)][: k - len(keys_first)]
    return set(keys_first) | set(others)


def wilson_hilferty_critical(df: int, alpha: float) -> float:
    """Upper-alpha quantile of chi-square(df) by the Wilson-Hilferty cube approximation."""
    z = statistics.NormalDist().inv_cdf(1 - alpha)
    h = 2 / (9 * df)
    return df * (1 - h + z * math.sqrt(h)) ** 3


# ---------------------------------------------------------------------------------------------
# institutions for the property tests
# ---------------------------------------------------------------------------------------------


@dataclass
class Institution:
    ids: np.ndarray  # int64, unique, positive, in an arbitrary row order
    teams: np.ndarray  # int64, the team of each row
    keys: np.ndarray  # bool
    seed: int
    params: DrawParams

    @property
    def team_of(self) -> dict[int, int]:
        return dict(zip(self.ids.tolist(), self.teams.tolist()))

    @property
    def key_of(self) -> dict[int, bool]:
        return dict(zip(self.ids.tolist(), self.keys.tolist()))

    @property
    def members(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for r, t in zip(self.ids.tolist(), self.teams.tolist()):
            out[t].append(r)
        return dict(out)

    @property
    def sizes(self) -> dict[int, int]:
        return {t: len(m) for t, m in self.members.items()}

    def draw(self):
        return draw_institution(self.seed, self.ids, self.teams, self.keys, self.params)


@st.composite
def institutions(draw) -> Institution:
    sizes = draw(
        st.lists(
            st.one_of(st.integers(0, 3), st.integers(0, 60)), min_size=1, max_size=15
        )
    )
    team_ids = draw(
        st.lists(
            st.integers(1, 10**6), min_size=len(sizes), max_size=len(sizes), unique=True
        )
    )
    total = sum(sizes)
    rnd = draw(st.randoms(use_true_random=False))
    id_style = draw(st.sampled_from(["consecutive", "sparse", "huge"]))
    if id_style == "consecutive":
        start = draw(st.integers(1, 1000))
        ids = list(range(start, start + total))
        rnd.shuffle(ids)
    elif id_style == "sparse":
        ids = rnd.sample(range(1, 10**7), total)
    else:  # up to the largest int64
        ids = rnd.sample(range(1, 2**63), total)
    rows = []
    pos = 0
    for team, size in zip(team_ids, sizes):
        mode = draw(st.sampled_from(["none", "all", "some"]))
        p = {"none": 0.0, "all": 1.0, "some": rnd.random()}[mode]
        for _ in range(size):
            rows.append((ids[pos], team, rnd.random() < p))
            pos += 1
    rnd.shuffle(rows)  # teams interleaved, arbitrary row order
    seed = draw(st.integers(0, M64 - 1))
    params = DrawParams(
        sample_size=draw(st.integers(10, 20)),
        backup_size=draw(st.integers(0, 15)),
        key_min_share=draw(
            st.one_of(st.none(), st.floats(min_value=0, max_value=1, exclude_min=True))
        ),
    )
    return Institution(
        ids=np.array([r[0] for r in rows], dtype=np.int64),
        teams=np.array([r[1] for r in rows], dtype=np.int64),
        keys=np.array([r[2] for r in rows], dtype=bool),
        seed=seed,
        params=params,
    )


def by_kind(draw_result, kind: str) -> list[Pick]:
    return sorted(
        (p for p in draw_result.picks if p.kind == kind), key=lambda p: p.position
    )


def per_team(picks: list[Pick]) -> Counter:
    return Counter(p.team_id for p in picks)


# ---------------------------------------------------------------------------------------------
# 1. properties over random institutions
# ---------------------------------------------------------------------------------------------


@PROPERTY
@given(institutions())
def test_counts_and_shortfall(inst: Institution):
    result = inst.draw()
    n, b = inst.params.sample_size, inst.params.backup_size
    eligible = len(inst.ids)
    primaries, backups = by_kind(result, "primary"), by_kind(result, "backup")

    assert result.eligible_count == eligible
    assert result.teams == sum(1 for s in inst.sizes.values() if s > 0)
    assert result.primaries == len(primaries) == min(n, eligible)
    assert result.shortfall == max(0, n - eligible)
    assert result.backups == len(backups) == min(b, eligible - result.primaries)
    assert len(result.picks) == result.primaries + result.backups
    assert {p.kind for p in result.picks} <= {"primary", "backup"}


@PROPERTY
@given(institutions())
def test_every_team_covered_or_one_each(inst: Institution):
    result = inst.draw()
    n = inst.params.sample_size
    nonempty = [t for t, s in inst.sizes.items() if s > 0]
    counts = per_team(by_kind(result, "primary"))
    if n >= len(nonempty):
        for t in nonempty:
            assert counts[t] >= 1, f"team {t} has no primary"
    else:
        assert len(counts) == n
        assert all(c == 1 for c in counts.values())
        assert set(counts) <= set(nonempty)


@PROPERTY
@given(institutions())
def test_picks_unique_consistent_and_from_input(inst: Institution):
    result = inst.draw()
    team_of = inst.team_of
    picked = [p.resident_id for p in result.picks]
    assert len(picked) == len(set(picked)), "a resident was picked twice"
    for p in result.picks:
        assert p.resident_id in team_of, f"{p.resident_id} is not an input resident"
        assert p.team_id == team_of[p.resident_id]
        assert isinstance(p.resident_id, int) and isinstance(p.team_id, int)


@PROPERTY
@given(institutions())
def test_positions_follow_lottery_order(inst: Institution):
    result = inst.draw()
    for kind in ("primary", "backup"):
        picks = by_kind(result, kind)
        assert [p.position for p in picks] == list(range(1, len(picks) + 1))
        ids = [p.resident_id for p in picks]
        # the sampler's numpy lottery, and the independent scalar formula, give the same order
        tickets = lottery(inst.seed, np.array(ids, dtype=np.int64)).tolist()
        assert tickets == [ref_lottery(inst.seed, r) for r in ids]
        assert ids == lottery_order(inst.seed, ids)
        assert all(tickets[i] <= tickets[i + 1] for i in range(len(tickets) - 1))


@PROPERTY_MORE
@given(institutions())
def test_allocation_is_proportional_with_caps(inst: Institution):
    result = inst.draw()
    n = inst.params.sample_size
    sizes = {t: s for t, s in inst.sizes.items() if s > 0}
    counts = per_team(by_kind(result, "primary"))
    total = sum(sizes.values())
    if total <= n:
        assert dict(counts) == sizes  # everyone is a primary
        return
    if n < len(sizes):
        return  # one each, covered by test_every_team_covered_or_one_each
    quotas = ideal_quotas(sizes, n)
    if all(q < sizes[t] for t, q in quotas.items()):
        # nothing capped: the plain formula 1 + (n - T) * s_t / S
        assert quotas == {
            t: 1 + Fraction((n - len(sizes)) * s, total) for t, s in sizes.items()
        }
    for t, s in sizes.items():
        assert counts[t] <= s
        assert abs(counts[t] - quotas[t]) < 1, (t, counts[t], quotas[t], sizes, n)
        if quotas[t] >= s:
            assert counts[t] == s  # a capped team gets all its residents


@PROPERTY
@given(institutions())
def test_key_population_minimum_share(inst: Institution):
    share = inst.params.key_min_share
    result = inst.draw()
    key_of = inst.key_of
    primaries = by_kind(result, "primary")
    counts = per_team(primaries)
    keys_picked = Counter(p.team_id for p in primaries if key_of[p.resident_id])
    keys_available = Counter(t for r, t in inst.team_of.items() if key_of[r])
    for t, k in counts.items():
        if share is None:
            continue
        assert keys_picked[t] >= min(math.ceil(share * k), keys_available[t]), (
            t,
            k,
            keys_picked[t],
            keys_available[t],
            share,
        )


@PROPERTY_MORE
@given(institutions())
def test_within_team_selection_follows_the_spec(inst: Institution):
    """Steps 3-5 end to end: per-team counts come from allocate() (primaries on the full
    sizes, backups on what is left), and within a team the picks are exactly the ones the
    docstring's step 4 names, recomputed here from the scalar lottery formula."""
    result = inst.draw()
    share = inst.params.key_min_share
    key_of = inst.key_of
    members = inst.members
    free = {t: lottery_order(inst.seed, m) for t, m in members.items()}
    for kind, slots in (
        ("primary", inst.params.sample_size),
        ("backup", inst.params.backup_size),
    ):
        picks = by_kind(result, kind)
        expected_alloc = allocate(
            {t: len(f) for t, f in free.items()}, slots, inst.seed
        )
        assert dict(per_team(picks)) == expected_alloc
        got = defaultdict(set)
        for p in picks:
            got[p.team_id].add(p.resident_id)
        for t, k in expected_alloc.items():
            assert got[t] == expected_team_take(free[t], key_of, k, share), (kind, t)
            free[t] = [r for r in free[t] if r not in got[t]]


@PROPERTY
@given(institutions(), st.randoms(use_true_random=False))
def test_deterministic_and_independent_of_input_order(
    inst: Institution, rnd: random.Random
):
    first = inst.draw()
    again = inst.draw()
    assert first == again

    perm = np.arange(len(inst.ids))
    rnd.shuffle(perm)
    shuffled = draw_institution(
        inst.seed, inst.ids[perm], inst.teams[perm], inst.keys[perm], inst.params
    )
    assert shuffled.picks == first.picks
    assert shuffled == first

    # plain Python lists are accepted and give the same draw
    as_lists = draw_institution(
        inst.seed,
        inst.ids.tolist(),
        inst.teams.tolist(),
        inst.keys.tolist(),
        inst.params,
    )
    assert as_lists == first


@PROPERTY
@given(institutions())
def test_no_key_flags_is_the_same_as_all_false(inst: Institution):
    none_flags = draw_institution(inst.seed, inst.ids, inst.teams, None, inst.params)
    all_false = draw_institution(
        inst.seed,
        inst.ids,
        inst.teams,
        np.zeros(len(inst.ids), dtype=bool),
        inst.params,
    )
    assert none_flags == all_false


def _fixed_institution():
    rng = random.Random(20261123)
    ids = rng.sample(range(1, 10**9), 400)
    teams = [101] * 40 + [102] * 80 + [103] * 120 + [104] * 160
    keys = [rng.random() < 0.3 for _ in ids]
    return (
        np.array(ids, dtype=np.int64),
        np.array(teams, dtype=np.int64),
        np.array(keys, dtype=bool),
    )


def test_different_seeds_give_different_selections():
    ids, teams, keys = _fixed_institution()
    params = DrawParams(sample_size=15, backup_size=10)
    selections = []
    orders = []
    for i in range(60):
        seed = derive_seed("430621", "2026-11", f"salt-{i}")
        result = draw_institution(seed, ids, teams, keys, params)
        selections.append(
            frozenset(p.resident_id for p in result.picks if p.kind == "primary")
        )
        orders.append(tuple(p.resident_id for p in result.picks))
    # two simple random samples of 15 out of 400 coincide with negligible probability
    assert len(set(selections)) == len(selections)
    assert len(set(orders)) == len(orders)
    # and the overlap between consecutive seeds is small (about 15 * 15 / 400 on average)
    overlaps = [len(a & b) for a, b in itertools.pairwise(selections)]
    assert statistics.mean(overlaps) < 3


def test_seed_is_used_modulo_2_64():
    ids, teams, keys = _fixed_institution()
    params = DrawParams(sample_size=12, backup_size=3)
    a = draw_institution(12345, ids, teams, keys, params)
    b = draw_institution(12345 + M64, ids, teams, keys, params)
    assert a == b


# ---------------------------------------------------------------------------------------------
# 2. exclusions happen outside: residents not in the input are never picked
# ---------------------------------------------------------------------------------------------


@PROPERTY
@given(institutions(), st.randoms(use_true_random=False))
def test_residents_left_out_of_the_input_are_never_picked(
    inst: Institution, rnd: random.Random
):
    keep = np.array([rnd.random() < 0.6 for _ in range(len(inst.ids))], dtype=bool)
    excluded = set(inst.ids[~keep].tolist())
    result = draw_institution(
        inst.seed, inst.ids[keep], inst.teams[keep], inst.keys[keep], inst.params
    )
    picked = {p.resident_id for p in result.picks}
    assert not picked & excluded
    assert picked <= set(inst.ids[keep].tolist())
    assert result.eligible_count == int(keep.sum())


def test_excluding_a_picked_resident_removes_only_that_resident_from_the_ranking():
    """With one team and no key share, the draw is the first k in lottery order: removing a
    picked resident from the input promotes the next one in lottery order."""
    ids = np.arange(1, 101, dtype=np.int64)
    teams = np.full(100, 7, dtype=np.int64)
    seed = derive_seed("430621", "2026-11", "exclusion")
    params = DrawParams(sample_size=10, backup_size=0)
    order = lottery_order(seed, ids.tolist())
    full = draw_institution(seed, ids, teams, None, params)
    assert [p.resident_id for p in full.picks] == order[:10]
    victim = order[3]
    keep = ids != victim
    reduced = draw_institution(seed, ids[keep], teams[keep], None, params)
    assert [p.resident_id for p in reduced.picks] == order[:3] + order[4:11]


# ---------------------------------------------------------------------------------------------
# 3. equal probability within a team
# ---------------------------------------------------------------------------------------------

EQUAL_PROB_SIZES = {1: 30, 2: 50, 3: 120}
# n = 10, T = 3: each team gets 1, the other r = 7 go by largest remainder of 7 * s_t / 200:
#   team 1: 210/200 = 1.05 -> 1, remainder 10;  team 2: 350/200 = 1.75 -> 1, remainder 150;
#   team 3: 840/200 = 4.2 -> 4, remainder 40.  Given 6, 1 left: largest remainder is team 2.
#   Allocation {1: 1+1, 2: 1+1+1, 3: 1+4} = {1: 2, 2: 3, 3: 5}, whatever the seed.
EQUAL_PROB_ALLOC = {1: 2, 2: 3, 3: 5}


def _pearson(counts: list[int], expected: float) -> float:
    return sum((c - expected) ** 2 / expected for c in counts)


def test_equal_probability_within_each_team():
    rows = [
        (t * 1000 + i, t) for t, s in EQUAL_PROB_SIZES.items() for i in range(1, s + 1)
    ]
    random.Random(5).shuffle(rows)
    ids = np.array([r for r, _ in rows], dtype=np.int64)
    teams = np.array([t for _, t in rows], dtype=np.int64)
    params = DrawParams(sample_size=10, backup_size=0)
    draws = 4000

    hits = Counter()
    team_totals = Counter()
    for i in range(draws):
        seed = derive_seed("430621", "2026-11", str(i))
        assert allocate(EQUAL_PROB_SIZES, 10, seed) == EQUAL_PROB_ALLOC
        result = draw_institution(seed, ids, teams, None, params)
        assert dict(per_team(result.picks)) == EQUAL_PROB_ALLOC
        for p in result.picks:
            hits[p.resident_id] += 1
            team_totals[p.team_id] += 1

    for t, s in EQUAL_PROB_SIZES.items():
        assert team_totals[t] / draws == EQUAL_PROB_ALLOC[t]  # mean allocation
        k = EQUAL_PROB_ALLOC[t]
        p = k / s
        counts = [hits[t * 1000 + i] for i in range(1, s + 1)]
        expected = draws * p
        stat = _pearson(counts, expected)
        # Each draw picks k of s without replacement, so the counts are not multinomial: the
        # covariance of the indicator vector is p(1-p) * s/(s-1) * (I - J/s), and Pearson's
        # statistic is c * chi2(s-1) with c = (1-p) * s/(s-1). Divide by c for an exact test.
        c = (1 - p) * s / (s - 1)
        critical = wilson_hilferty_critical(s - 1, 0.001)
        assert stat / c < critical, (t, stat / c, critical, counts)


def test_chi_square_check_detects_unequal_selection():
    """The check above can fail: a sampler that favours low ids in 30% of the draws is caught."""
    s, k, draws = 30, 2, 4000
    rng = random.Random(99)
    counts = Counter()
    for _ in range(draws):
        chosen = [0, 1] if rng.random() < 0.3 else rng.sample(range(s), k)
        counts.update(chosen)
    p = k / s
    stat = _pearson([counts[i] for i in range(s)], draws * p) / ((1 - p) * s / (s - 1))
    assert stat > wilson_hilferty_critical(s - 1, 0.001)


def test_wilson_hilferty_against_known_quantiles():
    # chi-square upper 0.001 quantiles from standard tables
    for df, table in ((30, 59.703), (50, 86.661), (100, 149.449), (120, 173.617)):
        assert wilson_hilferty_critical(df, 0.001) == pytest.approx(table, rel=0.005)


def test_team_choice_is_weighted_by_size_when_slots_are_fewer_than_teams():
    """Efraimidis-Spirakis with 10 slots, one team of size 1 and ten of size 60.

    key_t = ln(u_t)/s_t, so E_t = -key_t is exponential with rate s_t, and the team left out
    is the one with the largest E. The small team is left out with probability
    P(E_1 > max of ten Exp(60)) = E[exp(-M)] = sum_k C(10,k) (-1)^(k+1) 60k / (60k + 1).
    """
    sizes = {1: 1, **{t: 60 for t in range(2, 12)}}
    p_out = sum(
        math.comb(10, k) * (-1) ** (k + 1) * 60 * k / (60 * k + 1) for k in range(1, 11)
    )
    p_in = 1 - p_out  # about 0.05
    draws = 6000
    included = 0
    for i in range(draws):
        alloc = allocate(sizes, 10, derive_seed("430621", "2026-11", f"es-{i}"))
        assert len(alloc) == 10 and set(alloc.values()) == {1}
        included += 1 in alloc
    z = (included - draws * p_in) / math.sqrt(draws * p_in * (1 - p_in))
    assert abs(z) < 4, (included, draws * p_in)


# ---------------------------------------------------------------------------------------------
# 4. allocate(), worked by hand
# ---------------------------------------------------------------------------------------------


def test_allocate_big_team_and_two_small_ties_broken_by_team_lottery():
    # sizes 900, 50, 50; 10 slots; T = 3, so each team 1 and r = 7 by largest remainder:
    #   team 1: 7 * 900 = 6300 = 6 * 1000 + 300 -> 6, remainder 300
    #   team 2: 7 *  50 =  350 = 0 * 1000 + 350 -> 0, remainder 350
    #   team 3: same as team 2                    -> 0, remainder 350
    # given 6, 1 left: teams 2 and 3 tie on remainder and on size, so the smaller team lottery
    # number wins. Result: team 1 gets 7, one of teams 2/3 gets 2, the other 1.
    sizes = {1: 900, 2: 50, 3: 50}
    outcomes = set()
    for seed in range(40):
        winner = 2 if team_lottery(seed, 2) < team_lottery(seed, 3) else 3
        loser = 5 - winner
        assert allocate(sizes, 10, seed) == {1: 7, winner: 2, loser: 1}
        outcomes.add(winner)
    assert outcomes == {2, 3}  # the tie really is broken by the seed


def test_allocate_remainder_ties_go_to_the_larger_team():
    # sizes 20, 40, 60; 12 slots; r = 9, S = 120:
    #   team 1: 180 = 1 * 120 + 60 -> 1, rem 60;  team 2: 360 = 3 * 120 -> 3, rem 0;
    #   team 3: 540 = 4 * 120 + 60 -> 4, rem 60.  Given 8, 1 left: teams 1 and 3 tie on 60,
    #   the larger (team 3) wins, whatever the team lotteries. {1: 2, 2: 4, 3: 6}.
    for seed in range(20):
        assert allocate({1: 20, 2: 40, 3: 60}, 12, seed) == {1: 2, 2: 4, 3: 6}


def test_allocate_capped_team_passes_its_slot_on():
    # sizes 2, 8, 10; 19 slots; r = 16, S = 20:
    #   team 1: 32 = 1 * 20 + 12 -> 1, rem 12, alloc 2 = its size: full
    #   team 2: 128 = 6 * 20 + 8 -> 6, rem 8, alloc 7
    #   team 3: 160 = 8 * 20     -> 8, rem 0, alloc 9
    # given 15, 1 left: team 1 has the largest remainder but is full, so team 2 gets it.
    # {1: 2, 2: 8, 3: 9}; teams 1 and 2 are capped (all their residents). Check against the
    # water-filled quotas too: team 1 capped at 2, lam = 15/18, team 2: 1 + 8*15/18 = 7.67,
    # team 3: 1 + 10*15/18 = 9.33.
    for seed in range(20):
        assert allocate({1: 2, 2: 8, 3: 10}, 19, seed) == {1: 2, 2: 8, 3: 9}
    q = ideal_quotas({1: 2, 2: 8, 3: 10}, 19)
    assert q == {1: 2, 2: Fraction(23, 3), 3: Fraction(28, 3)}


def test_allocate_second_round_after_caps():
    # sizes 3, 3, 3, 3, 20; 31 slots (S = 32); r = 26:
    #   small teams: 78 = 2 * 32 + 14 -> 2, rem 14, alloc 3: full
    #   big team: 520 = 16 * 32 + 8 -> 16, rem 8, alloc 17
    # given 24, 2 left, only the big team is open: +1 (18), 1 still left -> second round,
    # open teams {5} with weight 20: 1 * 20 / 20 = 1 -> 19.  {small: 3 each, 5: 19}.
    assert allocate({1: 3, 2: 3, 3: 3, 4: 3, 5: 20}, 31, 0) == {
        1: 3,
        2: 3,
        3: 3,
        4: 3,
        5: 19,
    }


def test_allocate_quota_counterexample_from_larger_slot_counts():
    """Regression: the first version of ``allocate`` failed here (fixed by capping full teams
    before the largest-remainder round). Found by a random search with slots > 20 (the draw's
    property test above only uses 10..20 slots). What the old code did: sizes 4, 4, 4, 2, 1, 2, 30, slots 37: T = 7, r = 30; team 5 (size 1) is
    full from the start, so the weight is W = 46:
      teams 1-3: 30 * 4 = 120 = 2 * 46 + 28 -> 2, rem 28, alloc 3
      teams 4, 6: 30 * 2 = 60 = 1 * 46 + 14 -> 1, rem 14, alloc 2: full
      team 7: 30 * 30 = 900 = 19 * 46 + 26 -> 19, rem 26, alloc 20
      given 6 + 2 + 19 = 27, 3 left: the largest remainders among open teams are teams 1-3
      (28 each), so they become full (4 each) and team 7 stays at 20.
    Quotas: teams 4, 5, 6 are capped (2, 1, 2); the rest share 37 - 5 - 4 = 28 extra slots in
    proportion 4:4:4:30, lam = 28/42 = 2/3: teams 1-3 get 1 + 8/3 = 3.67 and team 7 gets
    1 + 20 = 21. Team 7 gets 20, a whole slot under its quota of 21 (largest remainder on the
    capped quotas would give team 7 its 21 and two of teams 1-3 a 4, the third a 3).
    """
    sizes = {1: 4, 2: 4, 3: 4, 4: 2, 5: 1, 6: 2, 7: 30}
    quotas = ideal_quotas(sizes, 37)
    assert quotas[7] == 21
    alloc = allocate(sizes, 37, 0)
    for t in sizes:
        assert abs(alloc[t] - quotas[t]) < 1, (t, alloc, quotas)
    assert alloc[7] == 21 and sum(alloc.values()) == 37


@settings(max_examples=400, deadline=None, database=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=80), min_size=1, max_size=25),
    slots=st.integers(min_value=1, max_value=300),
    seed=st.integers(min_value=0, max_value=2**64 - 1),
)
def test_allocate_meets_its_quotas_for_any_slot_count(sizes, slots, seed):
    teams = {t: s for t, s in enumerate(sizes, start=1)}
    alloc = allocate(teams, slots, seed)
    nonempty = [t for t, s in teams.items() if s > 0]
    total = sum(teams.values())
    assert sum(alloc.values()) == min(slots, total)
    assert all(0 < alloc[t] <= teams[t] for t in alloc)
    if total > slots >= len(nonempty):
        quotas = ideal_quotas(teams, slots)
        for t in nonempty:
            assert abs(alloc[t] - quotas[t]) < 1, (t, alloc, quotas)


def test_allocate_slots_fewer_than_teams_uses_es_keys():
    sizes = {
        t: s
        for t, s in zip(range(1, 14), [5, 1, 60, 7, 0, 33, 2, 19, 44, 3, 8, 12, 25])
    }
    nonempty = [t for t, s in sizes.items() if s > 0]  # 12 teams
    for seed in (0, 1, 2**63, derive_seed("430621", "2026-11", "es")):
        alloc = allocate(sizes, 10, seed)
        assert set(alloc.values()) == {1} and len(alloc) == 10
        assert 5 not in alloc  # an empty team is never chosen

        def es_key(t: int, seed: int = seed) -> float:
            u = (ref_mix64(ref_mix64(t) ^ seed ^ TEAM_DOMAIN) + 0.5) / 2.0**64
            return math.log(u) / sizes[t]

        assert set(alloc) == set(sorted(nonempty, key=es_key, reverse=True)[:10])


def test_allocate_total_within_slots_and_degenerate_inputs():
    assert allocate({1: 3, 2: 4, 3: 0}, 10, 0) == {1: 3, 2: 4}
    assert allocate({1: 3, 2: 7}, 10, 0) == {1: 3, 2: 7}  # exactly the slots
    assert allocate({1: 3, 2: 7}, 0, 0) == {}
    assert allocate({}, 10, 0) == {}
    assert allocate({1: 0, 2: 0}, 10, 0) == {}


def test_allocate_single_team():
    assert allocate({9: 500}, 17, 123) == {9: 17}


# ---------------------------------------------------------------------------------------------
# 5. packing, hashing, mixing
# ---------------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 2**62), st.integers(-(2**63), 2**63 - 1), st.booleans()
        ),
        unique_by=lambda r: r[0],
        max_size=200,
    )
)
def test_pack_unpack_round_trip(rows):
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    teams = np.array([r[1] for r in rows], dtype=np.int64)
    keys = np.array([r[2] for r in rows], dtype=bool)
    data = pack_eligible(ids, teams, keys)
    assert isinstance(data, bytes)
    out_ids, out_teams, out_keys = unpack_eligible(data, len(rows))
    assert (
        out_ids.dtype == np.int64
        and out_teams.dtype == np.int64
        and out_keys.dtype == bool
    )
    expected = sorted(rows)
    assert out_ids.tolist() == [r[0] for r in expected]
    assert out_teams.tolist() == [r[1] for r in expected]
    assert out_keys.tolist() == [r[2] for r in expected]


def test_pack_unpack_empty():
    empty = np.array([], dtype=np.int64)
    data = pack_eligible(empty, empty, np.array([], dtype=bool))
    ids, teams, keys = unpack_eligible(data, 0)
    assert len(ids) == len(teams) == len(keys) == 0
    with pytest.raises(ValueError):
        unpack_eligible(data, 1)


def test_unpack_rejects_wrong_count():
    data = pack_eligible(
        np.array([5, 3, 9], dtype=np.int64),
        np.array([1, 1, 2], dtype=np.int64),
        np.array([True, False, True]),
    )
    assert unpack_eligible(data, 3)[0].tolist() == [3, 5, 9]
    for wrong in (0, 2, 4):
        with pytest.raises(ValueError):
            unpack_eligible(data, wrong)


def test_pack_format_is_the_documented_one():
    import zlib

    data = pack_eligible(
        np.array([10, 4], dtype=np.int64),
        np.array([7, 8], dtype=np.int64),
        np.array([1, 0]),
    )
    raw = zlib.decompress(data)
    # ascending ids as deltas (4, 6), then teams (8, 7), then key bytes (0, 1)
    assert raw == struct.pack("<qqqqBB", 4, 6, 8, 7, 0, 1)


@settings(max_examples=50, deadline=None, database=None)
@given(st.lists(st.integers(1, 2**63 - 1), unique=True, max_size=100), st.randoms())
def test_eligible_hash_ignores_input_order(ids, rnd):
    shuffled = list(ids)
    rnd.shuffle(shuffled)
    h = eligible_hash(np.array(ids, dtype=np.int64))
    assert h == eligible_hash(np.array(shuffled, dtype=np.int64))
    assert (
        h
        == hashlib.sha256(
            b"".join(struct.pack("<q", r) for r in sorted(ids))
        ).hexdigest()
    )
    if ids:
        assert h != eligible_hash(np.array(ids[1:], dtype=np.int64))


def test_mix64_known_values():
    assert mix64(0) == 0
    assert mix64(1) == ref_mix64(1)
    assert mix64(1) != 1
    assert mix64(M64) == 0  # taken modulo 2**64
    assert mix64(M64 - 1) == ref_mix64(M64 - 1)


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(0, M64 - 1))
def test_mix64_matches_reference(x):
    assert mix64(x) == ref_mix64(x)


@settings(max_examples=50, deadline=None, database=None)
@given(
    st.integers(0, M64 - 1),
    st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=50),
)
def test_numpy_lottery_matches_scalar_formula(seed, ids):
    got = lottery(seed, np.array(ids, dtype=np.int64))
    assert got.dtype == np.uint64
    assert got.tolist() == [mix64(mix64(r) ^ seed) for r in ids]


def test_derive_seed_is_first_8_bytes_of_sha256():
    digest = hashlib.sha256(b"430621|2026-11|abc").digest()
    assert derive_seed("430621", "2026-11", "abc") == int.from_bytes(digest[:8], "big")
    assert derive_seed("430621", "2026-11", "abc") != derive_seed(
        "430621", "2026-12", "abc"
    )
    assert 0 <= derive_seed("430621", "2026-11", "") < M64


def test_team_lottery_formula():
    for seed in (0, 7, M64 - 1):
        for t in (1, 2, 999999):
            assert team_lottery(seed, t) == ref_mix64(ref_mix64(t) ^ seed ^ TEAM_DOMAIN)


# ---------------------------------------------------------------------------------------------
# 6. DrawParams validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_size": 9},
        {"sample_size": 0},
        {"sample_size": -10},
        {"backup_size": -1},
        {"key_min_share": 0},
        {"key_min_share": 0.0},
        {"key_min_share": -0.2},
        {"key_min_share": 1.0000001},
        {"key_min_share": 2},
    ],
)
def test_draw_params_rejects(kwargs):
    with pytest.raises(ValueError):
        DrawParams(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_size": 10, "backup_size": 0},
        {"sample_size": 200, "backup_size": 50},
        {"key_min_share": 1.0},
        {"key_min_share": 1e-9},
        {"key_min_share": None},
    ],
)
def test_draw_params_accepts(kwargs):
    DrawParams(**kwargs)
