"""The questionnaire and what it works with: options, the resident's context, derived values.

The item kinds live in ``items.py``; this module only asks an item what is kind-specific
(where an answer leads, whether it ends the interview or keeps a detail, how it reads).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.questionnaires.items import Item


class QuestionnaireError(ValueError):
    """A questionnaire file is broken, or the engine was asked about something it does not have."""


FLAGS: dict[str, str] = {
    "unaware": "疑似虚假签约",
    "no_service": "未接受服务",
    "below_standard": "服务次数低于标准",
    "dissatisfied": "不满意",
    "wants_contact": "要求机构联系",
}

BOOLEAN_ROLES = ("aware", "knows_doctor", "renew", "wants_contact")
SCALE_ROLES = ("effect", "satisfaction")
# role -> the kind its item must have
ROLES = {
    "identity": "single", "aware": "single", "knows_doctor": "single", "services": "multi",
    "service_count": "integer", "effect": "single", "satisfaction": "single", "renew": "single",
    "suggestion": "text", "wants_contact": "single",
}
PLACEHOLDERS = ("name", "bureau", "caller", "institution", "team", "doctor")
MAX_OPTIONS = 9  # number keys 1-9 pick options
DETAIL_MAX_LENGTH = 20
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def detail_key(code: str) -> str:
    """The answer key of the detail an option asks for (e.g. the proxy's relation)."""
    return f"{code}.detail"


@dataclass(frozen=True)
class Context:
    """What validation and derivation need to know about the resident."""

    age: int
    population_codes: tuple[str, ...] = ()
    annual_standards: Mapping[str, int] = field(default_factory=dict)  # population code -> yearly minimum


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    next: str | None = None
    end: bool = False
    detail_label: str | None = None
    max_age: int | None = None
    exclusive: bool = False
    score: float | None = None
    proxy: bool = False  # identity item: the answer is given by a family member

    def allowed(self, context: Context) -> bool:
        return self.max_age is None or context.age <= self.max_age


@dataclass(frozen=True)
class Derived:
    proxy: bool | None = None
    aware: bool | None = None
    knows_doctor: bool | None = None
    services: tuple[str, ...] | None = None
    service_count: int | None = None
    effect: int | None = None  # 1..5, 5 best
    satisfaction: int | None = None  # 1..5, 5 = 非常满意
    renew: bool | None = None
    wants_contact: bool | None = None
    flags: tuple[str, ...] = ()  # codes from FLAGS, in FLAGS order


@dataclass(frozen=True)
class Questionnaire:
    version: str
    title: str
    opening_script: str
    closing_script: str
    polite_end_script: str
    items: tuple[Item, ...]
    reference_months: int = 3
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", {item.code: i for i, item in enumerate(self.items)})

    # -- navigation ---------------------------------------------------------------------------

    def item(self, code) -> Item:
        try:
            return self.items[self._index[code]]
        except (KeyError, TypeError):
            raise QuestionnaireError(f"问卷 {self.version} 没有题目“{code}”") from None

    def role_item(self, role: str) -> Item | None:
        return next((item for item in self.items if item.role == role), None)

    def first(self) -> str:
        return self.items[0].code

    def next_code(self, code: str, value) -> str | None:
        """The item after ``code`` answered with ``value``; None when the questionnaire is over."""
        item = self.item(code)
        if item.ends(value):
            return None
        target = item.jump(value) or item.next
        if target:
            return target
        position = self._index[code] + 1
        return self.items[position].code if position < len(self.items) else None

    def path(self, answers: Mapping) -> list[str]:
        """Item codes visited from the first item following the answers, including the first
        unanswered one; stops at the end or after an answered option with ``end``."""
        codes, code = [], self.first()
        while code is not None:
            codes.append(code)
            if code not in answers:
                break
            code = self.next_code(code, answers[code])
        return codes

    def current(self, answers: Mapping) -> str | None:
        """The first unanswered item on the path; None if nothing is left to ask."""
        last = self.path(answers)[-1]
        return None if last in answers else last

    def ended_politely(self, answers: Mapping) -> bool:
        return any(self.item(code).ends(answers.get(code)) for code in self.path(answers))

    def is_complete(self, answers: Mapping) -> bool:
        return self.current(answers) is None and not self.ended_politely(answers)

    def prune(self, answers: Mapping) -> dict:
        """Only the answers on the path (and the details their chosen options ask for)."""
        kept = {}
        for code in self.path(answers):
            if code not in answers:
                continue
            kept[code] = answers[code]
            if self.item(code).asks_detail(answers[code]) and detail_key(code) in answers:
                kept[detail_key(code)] = answers[detail_key(code)]
        return kept

    # -- validation of one answer -------------------------------------------------------------

    def clean(self, code: str, raw: Mapping, context: Context, answers: Mapping | None = None) -> tuple[dict, list[str]]:
        """Check one item's form input ``raw = {"value": str | list[str], "detail": str}``.

        Returns ``(to_store, errors)``: ``to_store`` is the dict of answer keys to store
        (``{code: value}`` plus ``{code + ".detail": detail}`` when the chosen option asks for a
        detail); on errors it is ``{}`` and ``errors`` holds Chinese messages. ``answers`` (the
        answers so far) enables the cross-item check of the service count.
        """
        return self.item(code).clean(raw, context, answers or {}, self)

    # -- results ------------------------------------------------------------------------------

    def _on_path(self, answers: Mapping) -> dict:
        return {code: answers[code] for code in self.path(answers) if code in answers}

    def expected_services(self, context: Context) -> int:
        """Services owed in the reference period: the largest yearly standard among the
        resident's populations, prorated and rounded down (hypertension 5/yr → 1 in 3 months)."""
        yearly = max((context.annual_standards.get(code, 0) or 0 for code in context.population_codes), default=0)
        return int(yearly) * self.reference_months // 12

    def _chosen(self, given: Mapping, role: str) -> Option | None:
        item = self.role_item(role)
        if item is None or given.get(item.code) is None:
            return None
        return item.option(given[item.code])

    def _yes_no(self, given: Mapping, role: str) -> bool | None:
        option = self._chosen(given, role)
        return None if option is None or option.score is None else bool(option.score)

    def _scale(self, given: Mapping, role: str) -> int | None:
        option = self._chosen(given, role)
        return None if option is None or option.score is None else int(option.score)

    def _services(self, given: Mapping) -> tuple[tuple[str, ...] | None, bool, int | None]:
        """(services chosen, whether "no service" was chosen, service count)."""
        services_item = self.role_item("services")
        services = None
        none_chosen = False
        if services_item is not None and given.get(services_item.code) is not None:
            services = tuple(given[services_item.code])
            none_chosen = any(services_item.option(v).exclusive for v in services)
        count_item = self.role_item("service_count")
        count = given.get(count_item.code) if count_item is not None else None
        if count is None and none_chosen:
            count = 0
        return services, none_chosen, count

    def derive(self, answers: Mapping, context: Context) -> Derived:
        given = self._on_path(answers)
        identity = self._chosen(given, "identity")
        services, none_chosen, count = self._services(given)
        aware = self._yes_no(given, "aware")
        satisfaction = self._scale(given, "satisfaction")
        wants_contact = self._yes_no(given, "wants_contact")
        expected = self.expected_services(context)
        raised = {
            "unaware": aware is False,
            "no_service": none_chosen or count == 0,
            "below_standard": expected >= 1 and count is not None and count < expected,
            "dissatisfied": satisfaction is not None and satisfaction <= 2,
            "wants_contact": wants_contact is True,
        }
        return Derived(
            proxy=None if identity is None else identity.proxy,
            aware=aware,
            knows_doctor=self._yes_no(given, "knows_doctor"),
            services=services,
            service_count=count,
            effect=self._scale(given, "effect"),
            satisfaction=satisfaction,
            renew=self._yes_no(given, "renew"),
            wants_contact=wants_contact,
            flags=tuple(flag for flag in FLAGS if raised[flag]),
        )

    def breakoff_status(self, answers: Mapping) -> str:
        """For an interview that stopped early: "partial" once the satisfaction item is answered."""
        item = self.role_item("satisfaction")
        return "partial" if item is not None and self._on_path(answers).get(item.code) is not None else "breakoff"

    def display(self, answers: Mapping) -> list[tuple[str, str, str]]:
        """(code, title, answer in Chinese) for the answered items, in path order."""
        rows = []
        for code, value in self._on_path(answers).items():
            item = self.item(code)
            rows.append((code, item.title, item.display(value, answers.get(detail_key(code)))))
        return rows

    def render(self, template: str, **values) -> str:
        """Fill ``{name}``-style placeholders; unknown or missing ones stay visible as they are.
        Single pass, no format spec or attribute access, so values containing braces are safe."""

        def fill(match):
            value = values.get(match.group(1))
            return match.group(0) if value is None else str(value)

        return PLACEHOLDER.sub(fill, template or "")


def opening(q: Questionnaire, *, resident: str, bureau: str, caller: str, institution: str, team: str, doctor: str) -> str:
    return q.render(q.opening_script, name=resident, bureau=bureau, caller=caller,
                    institution=institution, team=team, doctor=doctor)
