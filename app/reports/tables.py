"""The ranking table as plain data: the one conversion of a `Ranking` (app/reports/rankings.py)
to dicts that the web page, the JSON API (/reports/api/rankings) and the CLI (`flask report
rankings --format json|csv`) all use, so every screen and export says the same thing.

Values are exact (proportions in 0–1, not rounded); only the CSV, which people open in Excel,
shows percentages with one decimal.
"""
from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator

from app.reports.indicators import LEVEL_LABELS, RATES, Rate, Unit
from app.reports.rankings import POSITION_LABELS, Ranking, RankRow
from app.core.spreadsheets import neutralise

# the indicators shown beside every ranked unit, in display order: (code, label, kind)
# kind: "rate" (a proportion with n and a Wilson interval), "mean" (a plain mean), "count"
INDICATORS = (
    ("aware", "签约知晓率", "rate"),
    ("knows_doctor", "家医知晓率", "rate"),
    ("fulfilment", "履约率", "rate"),
    ("mean_services", "平均服务次数", "mean"),
    ("effect", "服务实效", "rate"),
    ("satisfaction", "满意率", "rate"),
    ("score", "满意度得分", "mean"),
    ("renew", "续约意愿率", "rate"),
    ("flagged", "问题数", "count"),
)


def _finite(value: float | None) -> float | None:
    """None for a missing or infinite value (JSON has no Infinity)."""
    return None if value is None or not math.isfinite(value) else value


def rate_dict(rate: Rate) -> dict:
    interval = rate.interval
    return {
        "successes": rate.successes,
        "n": rate.n,
        "value": rate.value,
        "ci_low": interval[0] if interval else None,
        "ci_high": interval[1] if interval else None,
    }


def indicators_dict(unit: Unit) -> dict:
    """Every indicator of a unit: rates as {successes, n, value, ci_low, ci_high}, the means as
    numbers, 问题数 as a count."""
    result: dict = {}
    for code, _label, kind in INDICATORS:
        if kind == "rate":
            result[code] = rate_dict(unit.rate(code))
        elif code == "mean_services":
            result[code] = unit.mean_services
        elif code == "score":
            result[code] = unit.score
        else:
            result[code] = unit.counts.flagged
    return result


def row_dict(row: RankRow) -> dict:
    """One unit of a ranking. ``n`` is the unit's completed interviews, ``denominator`` the
    ranked indicator's (e.g. valid answers to the satisfaction item)."""
    unit = row.unit
    return {
        "rank": row.rank,
        "level": unit.level,
        "id": unit.key,
        "name": unit.name,
        "parent": unit.parent,
        "county_id": unit.county_id,
        "institution_id": unit.institution_id,
        "n": row.completes,
        "successes": row.successes,
        "denominator": row.n,
        "observed": row.observed,
        "ci_low": row.low,
        "ci_high": row.high,
        "adjusted": row.adjusted,
        "previous": row.previous,
        "previous_denominator": row.previous_n,
        "change": row.change,
        "position": row.position,
        "position_label": POSITION_LABELS.get(row.position) if row.position else None,
        "composite": row.composite,
        "indicators": indicators_dict(unit),
    }


def ranking_dict(ranking: Ranking, *, county: dict | None = None, ranked: list[RankRow] | None = None,
                 insufficient: list[RankRow] | None = None) -> dict:
    """The whole table: what was ranked, over which months, the prior the estimates were pulled
    towards, then the ranked rows (best first) and the rows with too few interviews. ``ranked``
    / ``insufficient``: only these rows of the ranking (a page of it), else all.

    ``prior.alpha``/``beta`` are null with ``pooled`` true when the units differ no more than
    chance would make them: every estimate is then the overall rate."""
    prior = ranking.prior
    return {
        "level": ranking.level,
        "level_label": LEVEL_LABELS[ranking.level],
        "month": ranking.month,
        "window": ranking.window,
        "months": list(ranking.months),
        "previous_months": list(ranking.previous_months),
        "indicator": ranking.indicator,
        "indicator_label": RATES[ranking.indicator],
        "county": county,
        "overall": ranking.overall,
        "prior": None if prior is None else {
            "alpha": _finite(prior.alpha),
            "beta": _finite(prior.beta),
            "mean": prior.mean,
            "rho": prior.rho,
            "pooled": not math.isfinite(prior.alpha),
        },
        "min_n": ranking.min_n,
        "ranked": [row_dict(r) for r in (ranking.ranked if ranked is None else ranked)],
        "insufficient": [row_dict(r) for r in (ranking.insufficient if insufficient is None else insufficient)],
        "funnel": ranking.funnel,
    }


# ---------------------------------------------------------------------------
# CSV (for people: percentages with one decimal, a Chinese header row)
# ---------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def csv_header(table: dict) -> list[str]:
    label = table["indicator_label"]
    head = ["状态", "名次", LEVEL_LABELS[table["level"]], "上级", "完成访问数", f"{label}·达标数", f"{label}·有效回答数",
            f"{label}（%）", "95%区间下限（%）", "95%区间上限（%）", "调整后（%）", "上期调整后（%）", "变化（百分点）",
            "漏斗图位置", "综合得分"]
    for _code, name, kind in INDICATORS:
        if kind == "rate":
            head += [f"{name}（%）", f"{name}·n"]
        else:
            head.append(name)
    return head


def csv_rows(table: dict) -> Iterator[list]:
    yield csv_header(table)
    for status, rows in (("排名", table["ranked"]), ("样本不足", table["insufficient"])):
        for row in rows:
            line = [status, row["rank"] if row["rank"] is not None else "", row["name"], row["parent"], row["n"],
                    row["successes"], row["denominator"], _pct(row["observed"]), _pct(row["ci_low"]),
                    _pct(row["ci_high"]), _pct(row["adjusted"]), _pct(row["previous"]), _pct(row["change"]),
                    row["position_label"] or "", _num(row["composite"])]
            for code, _name, kind in INDICATORS:
                value = row["indicators"][code]
                if kind == "rate":
                    line += [_pct(value["value"]), value["n"]]
                elif kind == "mean":
                    line.append(_num(value))
                else:
                    line.append(value)
            yield line


_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?%?")  # our own figures ("-3.2%"), left as they are


def write_csv(table: dict, stream) -> None:
    """The table as CSV on a stream; every cell through the spreadsheet helper's
    neutralise(), so a unit name such as "=cmd|…" cannot become a formula in Excel."""
    writer = csv.writer(stream, lineterminator="\n")
    for line in csv_rows(table):
        writer.writerow([cell if _NUMBER.fullmatch(str(cell)) else neutralise(cell) for cell in line])
