"""The configurable parts of the indicators and rankings, read once from the config."""
from __future__ import annotations

from dataclasses import dataclass, field

from app.reports.indicators import DEFAULT_SCORES, DEFAULT_WEIGHTS, RATES
from app.reports.rankings import DEFAULT_MIN_N


class ReportSettingsError(ValueError):
    pass


def _pairs(text: str, name: str) -> dict[str, float]:
    result = {}
    for piece in (text or "").split(","):
        if not piece.strip():
            continue
        key, sep, value = piece.partition(":")
        try:
            if not sep:
                raise ValueError
            result[key.strip()] = float(value)
        except ValueError:
            raise ReportSettingsError(f"{name} 的格式应为“名称:数值,名称:数值”，无法识别：{piece.strip()}") from None
    return result


@dataclass(frozen=True)
class ReportSettings:
    scores: tuple[float, ...] = DEFAULT_SCORES
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    min_n: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MIN_N))

    @classmethod
    def from_config(cls, config) -> ReportSettings:
        try:
            scores = tuple(float(v) for v in config["REPORT_SATISFACTION_SCORES"].split(","))
        except ValueError:
            raise ReportSettingsError("REPORT_SATISFACTION_SCORES 应为5个数字，如 100,75,50,25,0") from None
        if len(scores) != 5:
            raise ReportSettingsError("REPORT_SATISFACTION_SCORES 应为5个数字（非常满意 … 非常不满意）")
        weights = _pairs(config["REPORT_COMPOSITE_WEIGHTS"], "REPORT_COMPOSITE_WEIGHTS")
        unknown = set(weights) - set(RATES) - {"score"}
        if unknown or not weights or any(w < 0 for w in weights.values()):
            raise ReportSettingsError(
                "REPORT_COMPOSITE_WEIGHTS 只能包含 score、" + "、".join(RATES) + " 且权重不能为负"
            )
        pairs = _pairs(config["RANK_MIN_N"], "RANK_MIN_N")
        if any(v != int(v) for v in pairs.values()):
            raise ReportSettingsError("RANK_MIN_N 的最小样本数必须是整数")
        min_n = {k: int(v) for k, v in pairs.items()}
        if set(min_n) - {"team", "institution", "county"} or any(v < 1 for v in min_n.values()):
            raise ReportSettingsError("RANK_MIN_N 只能包含 team、institution、county，且至少为1")
        return cls(scores, weights, {**DEFAULT_MIN_N, **min_n})
