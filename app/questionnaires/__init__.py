"""Versioned questionnaires: loader, validator and engine (no Flask, no database).

A questionnaire version is one JSON file in this folder (``v1.json`` …) whose ``version``
equals the file name. Items are asked in file order; ``next`` on an item or on an option
jumps forward (never backwards, so there are no cycles), and an option with ``end: true``
ends the interview politely (identity could not be established).

Answers are a JSON object keyed by item code:

* single → the option value (str); multi → list of option values in definition order;
  integer → int; text → str (stripped, "" allowed when not required); an item that is not
  required and left blank is stored as None (single/integer) or [] (multi).
* an option with ``detail_label`` (the proxy's relation to the resident) also stores the
  detail under ``"<code>.detail"``.

``Questionnaire.clean`` always returns the dict of keys to store for one item, e.g.
``{"identity": "proxy_unable", "identity.detail": "女儿"}`` or ``{"satisfaction": "satisfied"}``.
Store it with ``answers = q.prune({**answers, **cleaned})``: ``prune`` drops what is no longer
on the path (after an earlier answer was changed) and a stale ``.detail``.

An item is "answered" when its code is a key of ``answers``. Only answers on the path count
for ``derive``, ``display`` and ``breakoff_status``.

Roles tie items to indicators (at most one item per role):

* ``identity`` (single): options with ``proxy: true`` are proxy answers;
* ``aware``, ``knows_doctor``, ``renew``, ``wants_contact`` (single): option ``score``
  1 = yes, 0 = no, null = don't know (derived None);
* ``effect``, ``satisfaction`` (single): ``score`` 5..1, 5 best, null = can't say;
* ``services`` (multi): an ``exclusive`` option means "no service received"; it may skip the
  ``service_count`` item, whose derived value is then 0;
* ``service_count`` (integer): services in the reference period (``reference_months``,
  default 3); 0 is refused when services other than the exclusive one were chosen;
* ``suggestion`` (text).

Modules: ``model`` (Questionnaire, Option, Context, Derived), ``items`` (one class per item
kind, registered in ``ITEM_TYPES``), ``loader`` (the table-driven checks of a file), ``forms``
(the WTForms form of one item).
"""
from app.questionnaires.items import ITEM_TYPES, KINDS, IntegerItem, Item, MultiChoice, SingleChoice, TextItem
from app.questionnaires.loader import load_questionnaire, load_questionnaires
from app.questionnaires.model import (
    DETAIL_MAX_LENGTH,
    FLAGS,
    PLACEHOLDERS,
    ROLES,
    Context,
    Derived,
    Option,
    Questionnaire,
    QuestionnaireError,
    opening,
)

__all__ = [
    "DETAIL_MAX_LENGTH", "FLAGS", "ITEM_TYPES", "KINDS", "ROLES", "PLACEHOLDERS", "Context", "Derived",
    "IntegerItem", "Item", "MultiChoice", "Option", "Questionnaire", "QuestionnaireError", "SingleChoice",
    "TextItem", "load_questionnaire", "load_questionnaires", "opening",
]
