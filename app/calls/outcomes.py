"""Call outcomes: codes, Chinese labels, AAPOR classes and the flags that drive the rules.

One table serves the case screen (which outcomes follow "接通了" and "未接通"), the attempt
rules (final or temporary, replacement), the disposition of a case from its attempts, and
the response rates (AAPOR class). The AAPOR classes are those of domain.md "Call outcomes":

  I complete · P partial · R refusal/break-off · NC non-contact · O other ·
  UH/UO unknown eligibility · NE not eligible
"""
from __future__ import annotations

from dataclasses import dataclass

from app.models.survey import CASE_STATE_LABELS


@dataclass(frozen=True)
class Outcome:
    code: str
    label: str
    aapor: str  # I, P, R, NC, O, UH, NE
    aapor_code: str  # the AAPOR Standard Definitions disposition code
    connected: bool  # offered after "接通了" (someone answered) rather than "未接通"
    final: bool  # ends the case
    contact: bool  # contact with the sampled resident (or their proxy) was made
    replace: bool  # a case ending with it is replaced by the next backup
    note_required: bool
    rank: int  # precedence when a case's disposition is derived from several attempts
    by_questionnaire: bool = False  # recorded by the questionnaire, not chosen from the list
    callback: bool = False  # needs a date and time for the callback


_OUTCOMES = (
    # connected: someone picked up
    Outcome("complete", "完成访问", "I", "1.1", True, True, True, False, False, 100, by_questionnaire=True),
    Outcome("partial", "部分完成", "P", "1.2", True, True, True, False, False, 95, by_questionnaire=True),
    Outcome("breakoff", "中途挂断", "R", "2.12", True, True, True, False, False, 90, by_questionnaire=True),
    Outcome("refusal", "拒访", "R", "2.11", True, True, True, False, False, 90),
    Outcome("callback", "约定回访", "NC", "2.21", True, False, False, False, False, 40, callback=True),
    Outcome("not_available", "本人不在", "NC", "2.20", True, False, False, False, False, 35),
    Outcome("wrong_person", "号码错误/非本人", "UH", "3.9", True, True, False, True, True, 60),
    Outcome("incapable", "听力或语言障碍", "O", "2.32", True, True, True, True, True, 80),
    Outcome("deceased", "本人已故", "O", "2.31", True, True, True, True, True, 80),
    Outcome("moved", "已迁出/已解约", "NE", "4.10", True, True, False, True, True, 70),
    # not connected
    Outcome("no_answer", "无人接听", "UH", "3.13", False, False, False, False, False, 20),
    Outcome("busy", "占线", "UH", "3.12", False, False, False, False, False, 15),
    Outcome("powered_off", "关机", "UH", "3.9", False, False, False, False, False, 25),
    Outcome("suspended", "停机", "UH", "3.9", False, True, False, True, False, 55),
    Outcome("vacant", "空号", "UH", "3.9", False, True, False, True, False, 55),
)

OUTCOMES: dict[str, Outcome] = {o.code: o for o in _OUTCOMES}

# Dispositions given by the system, not by a caller.
OPEN_AT_CLOSE = "open_at_close"  # drawn and activated, never dialled before the month closed
SYSTEM_LABELS = {OPEN_AT_CLOSE: "月末未拨打"}

AAPOR_LABELS = {
    "I": "完成",
    "P": "部分完成",
    "R": "拒访/中断",
    "NC": "未联系上本人",
    "O": "其他原因",
    "UH": "资格未知",
    "NE": "不符合条件",
}


def outcome(code: str) -> Outcome:
    try:
        return OUTCOMES[code]
    except KeyError:
        raise ValueError(f"未知的拨打结果：{code}") from None


def label(code: str | None) -> str:
    if code is None:  # an attempt not ended yet
        return CASE_STATE_LABELS["on_call"]
    if code in OUTCOMES:
        return OUTCOMES[code].label
    return SYSTEM_LABELS.get(code, code)


def aapor_class(code: str | None) -> str | None:
    """The AAPOR class of a case's disposition (None for an untouched reserve)."""
    if code is None:
        return None
    if code == OPEN_AT_CLOSE:
        return "UH"  # never dialled: eligibility unknown
    return OUTCOMES[code].aapor


def choices(connected: bool) -> list[Outcome]:
    """What a caller may pick after "接通了" (connected) or "未接通"."""
    return [o for o in _OUTCOMES if o.connected == connected and not o.by_questionnaire]


def disposition(codes: list[str]) -> str | None:
    """A case's disposition from its attempts' outcomes (oldest first).

    A final outcome decides: it ends the case, so nothing follows it. Otherwise the most
    informative temporary outcome wins, so a resident once reached (本人不在, 约定回访)
    counts as a non-contact rather than as unknown eligibility; among equals the latest.
    """
    codes = [c for c in codes if c]
    if not codes:
        return None
    finals = [c for c in codes if OUTCOMES[c].final]
    if finals:
        return finals[-1]
    best = codes[0]
    for code in codes[1:]:
        if OUTCOMES[code].rank >= OUTCOMES[best].rank:
            best = code
    return best


def merge(current: str | None, new: str) -> str:
    """The disposition after one more attempt. A final outcome is never overwritten by a
    later temporary one (or by anything: a final outcome ends the case)."""
    if current is None or current == OPEN_AT_CLOSE:
        return new
    if OUTCOMES[current].final:
        return current
    return disposition([current, new])
