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


@dataclass(frozen=True, kw_only=True)
class Outcome:
    code: str
    label: str
    aapor: str  # I, P, R, NC, O, UH, NE
    rank: int  # precedence when a case's disposition is derived from several attempts
    connected: bool = False  # offered after "接通了" (someone answered) rather than "未接通"
    final: bool = False  # ends the case
    contact: bool = False  # contact with the sampled resident (or their proxy) was made
    replace: bool = False  # a case ending with it is replaced by the next backup
    note_required: bool = False
    by_questionnaire: bool = False  # recorded by the questionnaire, not chosen from the list
    callback: bool = False  # needs a date and time for the callback
    key: str = ""  # the single key that records it on the dialling panel


_OUTCOMES = (
    # connected: someone picked up
    Outcome(code="complete", label="完成访问", aapor="I", rank=100, connected=True, final=True, contact=True, by_questionnaire=True),
    Outcome(code="partial", label="部分完成", aapor="P", rank=95, connected=True, final=True, contact=True, by_questionnaire=True),
    Outcome(code="breakoff", label="中途终止", aapor="R", rank=90, connected=True, final=True, contact=True, by_questionnaire=True),
    Outcome(code="refusal", label="拒访", aapor="R", rank=90, connected=True, final=True, contact=True, key="8"),
    Outcome(code="callback", label="约定回访", aapor="NC", rank=40, connected=True, callback=True, key="7"),
    # the line dropped (or the resident had to stop) with the interview begun: the answers are
    # kept and the interview resumes at the first unanswered item when the case comes back
    Outcome(code="interrupted", label="通话中断，约定续访", aapor="NC", rank=45, connected=True, contact=True,
            by_questionnaire=True, callback=True),
    Outcome(code="not_available", label="本人不在", aapor="NC", rank=35, connected=True, key="6"),
    Outcome(code="wrong_person", label="号码错误/非本人", aapor="UH", rank=60, connected=True, final=True, replace=True, note_required=True, key="9"),
    Outcome(code="incapable", label="听力或语言障碍", aapor="O", rank=80, connected=True, final=True, contact=True, replace=True, note_required=True, key="T"),
    Outcome(code="deceased", label="本人已故", aapor="O", rank=80, connected=True, final=True, contact=True, replace=True, note_required=True, key="G"),
    Outcome(code="moved", label="已迁出/已解约", aapor="NE", rank=70, connected=True, final=True, replace=True, note_required=True, key="Q"),
    # not connected
    Outcome(code="no_answer", label="无人接听", aapor="UH", rank=20, key="1"),
    Outcome(code="busy", label="占线", aapor="UH", rank=15, key="2"),
    Outcome(code="powered_off", label="关机", aapor="UH", rank=25, key="3"),
    Outcome(code="suspended", label="停机", aapor="UH", rank=55, final=True, replace=True, key="4"),
    Outcome(code="vacant", label="空号", aapor="UH", rank=55, final=True, replace=True, key="5"),
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
