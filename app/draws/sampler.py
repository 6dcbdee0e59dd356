"""The sampler: a pure function from an institution's eligible residents and a seed to its
primary and backup cases. No database, no clock; the README's "抽样算法" section describes the
same steps for an inspector.

Algorithm "lottery-v1":

1. seed = the first 8 bytes (big-endian) of SHA-256("<county code>|<YYYY-MM>|<salt>").
2. Every eligible resident gets a lottery number
       lottery(r) = mix64(mix64(r) XOR seed)
   where r is the resident's database id and mix64 is the SplitMix64 finaliser (below),
   all arithmetic modulo 2**64. Sorting a group by lottery number (ties, which need a 64-bit
   collision, by id) puts it in a uniformly random order: a simple random sample of k is
   the first k.
3. Primary allocation over the institution's teams (eligible size s_t, total S, n slots):
   - S <= n: everyone is a primary (shortfall n - S);
   - n < number of teams: n teams are chosen, weighted by size, by Efraimidis-Spirakis:
     u_t = (team_lottery(t) + 0.5) / 2**64, key_t = ln(u_t) / s_t, the n largest keys win,
     one case each; team_lottery(t) = mix64(mix64(t) XOR seed XOR TEAM_DOMAIN);
   - otherwise every team gets 1, and the remaining r = n - T slots go in proportion to
     size: first, while some team's quota 1 + r * s_t / S' reaches its size s_t, such teams
     take all their residents and leave (r and S' recomputed over the teams left); then
     each remaining team gets floor(r * s_t / S') more and the leftover slots go to the
     largest remainders r * s_t mod S' (ties: larger team, then smaller team lottery number).
4. Within a team, the k primaries are the first k residents in lottery order; with a minimum
   key-population share m, the first ceil(m * k) key-population residents in lottery order
   are taken first (as many as the team has), then the rest in lottery order.
5. Backups: the same allocation and within-team rule applied to what is left after the
   primaries, with b slots. Their order (the order replacements are used in) is lottery order
   across the whole institution; primaries are numbered in lottery order too.
"""
from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass

import numpy as np

ALGORITHM = "lottery-v1"
MASK64 = (1 << 64) - 1
TEAM_DOMAIN = 0x7465616D5F6B6579  # "team_key": separates team lotteries from resident ones


def mix64(value: int) -> int:
    """SplitMix64's finaliser (Steele, Lea, Flood 2014), for one integer."""
    z = value & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def _mix64_array(values: np.ndarray) -> np.ndarray:
    z = values.astype(np.uint64, copy=True)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)  # uint64 arrays wrap modulo 2**64
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def derive_seed(county_code: str, month: str, salt: str) -> int:
    digest = hashlib.sha256(f"{county_code}|{month}|{salt}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def lottery(seed: int, ids: np.ndarray) -> np.ndarray:
    return _mix64_array(_mix64_array(np.asarray(ids, dtype=np.int64)) ^ np.uint64(seed & MASK64))


def team_lottery(seed: int, team_id: int) -> int:
    return mix64(mix64(team_id) ^ (seed & MASK64) ^ TEAM_DOMAIN)


def eligible_hash(resident_ids: np.ndarray) -> str:
    """SHA-256 of the eligible ids in ascending order, each as 8 bytes little-endian."""
    ids = np.sort(np.asarray(resident_ids, dtype="<i8"))
    return hashlib.sha256(ids.tobytes()).hexdigest()


def pack_eligible(resident_ids: np.ndarray, team_ids: np.ndarray, key_flags: np.ndarray) -> bytes:
    """The eligible set as stored with the round: zlib of three arrays, in ascending resident
    id order: the ids as differences from the previous id (the first from 0), team ids, each
    as 8 bytes little-endian, then one byte per resident (1 = key population)."""
    order = np.argsort(resident_ids, kind="stable")
    ids = np.asarray(resident_ids, dtype="<i8")[order]
    deltas = np.diff(ids, prepend=np.int64(0)).astype("<i8")
    payload = (
        deltas.tobytes()
        + np.asarray(team_ids, dtype="<i8")[order].tobytes()
        + np.asarray(key_flags, dtype=np.uint8)[order].tobytes()
    )
    return zlib.compress(payload, 6)


def unpack_eligible(data: bytes, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw = zlib.decompress(data)
    if len(raw) != count * 17:
        raise ValueError("eligible data does not match its recorded count")
    ids = np.cumsum(np.frombuffer(raw[: 8 * count], dtype="<i8")).astype(np.int64)
    teams = np.frombuffer(raw[8 * count : 16 * count], dtype="<i8").astype(np.int64)
    keys = np.frombuffer(raw[16 * count :], dtype=np.uint8).astype(bool)
    return ids, teams, keys


@dataclass(frozen=True)
class DrawParams:
    sample_size: int = 10
    backup_size: int = 10
    key_min_share: float | None = None

    def __post_init__(self) -> None:
        if self.sample_size < 10:
            raise ValueError("每个机构的主样本量不能少于10")
        if self.backup_size < 0:
            raise ValueError("备用样本量不能为负数")
        if self.key_min_share is not None and not 0 < self.key_min_share <= 1:
            raise ValueError("重点人群最低比例应在0到1之间")


@dataclass(frozen=True)
class Pick:
    resident_id: int
    team_id: int
    kind: str  # primary / backup
    position: int  # 1.. within the institution and kind


@dataclass(frozen=True)
class InstitutionDraw:
    picks: list[Pick]
    eligible_count: int
    teams: int
    primaries: int
    backups: int
    shortfall: int


def allocate(sizes: dict[int, int], slots: int, seed: int) -> dict[int, int]:
    """Slots per team (see step 3 of the module docstring). sizes: team id -> eligible count."""
    teams = sorted(t for t, s in sizes.items() if s > 0)
    total = sum(sizes[t] for t in teams)
    if slots <= 0 or not teams:
        return {}
    if total <= slots:
        return {t: sizes[t] for t in teams}
    if slots < len(teams):
        def es_key(t: int) -> float:
            u = (team_lottery(seed, t) + 0.5) / 2.0**64
            return math.log(u) / sizes[t]

        chosen = sorted(teams, key=lambda t: (-es_key(t), t))[:slots]
        return {t: 1 for t in chosen}
    # every team 1; the r = slots - T others in proportion to size. A team whose quota
    # 1 + r * s_t / S' reaches its size takes all its residents and leaves the proportion
    # (r and S' recomputed without it) until no quota does; then one largest-remainder round.
    alloc = {t: 1 for t in teams}
    open_teams = [t for t in teams if sizes[t] > 1]
    remaining = slots - len(teams)
    capped = True
    while capped and open_teams:
        weight = sum(sizes[t] for t in open_teams)
        full = [t for t in open_teams if remaining * sizes[t] >= (sizes[t] - 1) * weight]
        capped = bool(full)
        for t in full:
            remaining -= sizes[t] - 1
            alloc[t] = sizes[t]
        open_teams = [t for t in open_teams if t not in full]
    if remaining > 0 and open_teams:
        weight = sum(sizes[t] for t in open_teams)
        remainders = []
        for t in open_teams:
            share, rest = divmod(remaining * sizes[t], weight)
            alloc[t] += share
            remainders.append((-rest, -sizes[t], team_lottery(seed, t), t))
        leftover = remaining - sum(divmod(remaining * sizes[t], weight)[0] for t in open_teams)
        for *_, t in sorted(remainders)[:leftover]:
            alloc[t] += 1
    return alloc


def _take(order: np.ndarray, keys: np.ndarray, k: int, key_min_share: float | None) -> np.ndarray:
    """Indices (into order's arrays) of the k picks of one team; order is lottery order."""
    if k >= len(order):
        return np.arange(len(order))
    if not key_min_share:
        return np.arange(k)
    need = math.ceil(key_min_share * k)
    key_positions = np.flatnonzero(keys)[:need]
    rest = np.setdiff1d(np.arange(len(order)), key_positions, assume_unique=True)[: k - len(key_positions)]
    return np.sort(np.concatenate([key_positions, rest]))


def draw_institution(
    seed: int,
    resident_ids: np.ndarray,
    team_ids: np.ndarray,
    key_flags: np.ndarray | None,
    params: DrawParams,
) -> InstitutionDraw:
    """Primaries and backups of one institution from its eligible residents."""
    resident_ids = np.asarray(resident_ids, dtype=np.int64)
    team_ids = np.asarray(team_ids, dtype=np.int64)
    keys = np.zeros(len(resident_ids), dtype=bool) if key_flags is None else np.asarray(key_flags, dtype=bool)
    tickets = lottery(seed, resident_ids)
    # one pass: by team, then lottery number (then id), so each team is a slice in lottery order
    order = np.lexsort((resident_ids, tickets, team_ids))
    ids_sorted, teams_sorted, keys_sorted, tickets_sorted = (
        resident_ids[order], team_ids[order], keys[order], tickets[order]
    )
    bounds = np.flatnonzero(np.diff(teams_sorted)) + 1
    starts = np.concatenate([[0], bounds]).astype(int)
    ends = np.concatenate([bounds, [len(ids_sorted)]]).astype(int)
    team_slices = {int(teams_sorted[s]): (s, e) for s, e in zip(starts, ends) if e > s}

    taken = np.zeros(len(ids_sorted), dtype=bool)
    chosen: dict[str, list[int]] = {"primary": [], "backup": []}
    for kind, slots in (("primary", params.sample_size), ("backup", params.backup_size)):
        available = {t: int(e - s - taken[s:e].sum()) for t, (s, e) in team_slices.items()}
        for team, k in allocate(available, slots, seed).items():
            s, e = team_slices[team]
            free = np.flatnonzero(~taken[s:e]) + s
            picks = free[_take(free, keys_sorted[free], k, params.key_min_share)]
            taken[picks] = True
            chosen[kind].extend(int(i) for i in picks)

    result: list[Pick] = []
    counts = {}
    for kind, indices in chosen.items():
        ranked = sorted(indices, key=lambda i: (int(tickets_sorted[i]), int(ids_sorted[i])))
        counts[kind] = len(ranked)
        result.extend(
            Pick(int(ids_sorted[i]), int(teams_sorted[i]), kind, position)
            for position, i in enumerate(ranked, start=1)
        )
    return InstitutionDraw(
        picks=result,
        eligible_count=len(resident_ids),
        teams=len(team_slices),
        primaries=counts["primary"],
        backups=counts["backup"],
        shortfall=max(0, params.sample_size - counts["primary"]),
    )
