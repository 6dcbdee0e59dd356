"""A supervisor's correction of a recorded answer: old and new values kept, indicators and
the problem derived again. Flushes; the boundary commits."""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy.orm import Session

from app.core.clock import utc_naive
from app.models import audit, AnswerEdit, Response, User
from app.questionnaires import Context, Questionnaire
from app.calls.guards import CallError
from app.calls.interview import derive_into, answers_of, sync_problem


def edit_answer(
    session: Session,
    response_id: int,
    user: User,
    cleaned: dict,
    *,
    item: str,
    reason: str,
    questionnaire: Questionnaire,
    context: Context,
    now: datetime,
) -> AnswerEdit:
    """A supervisor corrects a completed response: the old and new value, the reason, who
    and when are kept, the indicators and flags are derived again. Items that decide the
    questionnaire's path cannot be edited (the answers after them would not fit)."""
    reason = (reason or "").strip()
    if not reason:
        raise CallError("修改答案必须填写原因。")
    response = session.get(Response, response_id)
    if response is None or response.status not in ("complete", "partial"):
        raise CallError("只能修改已完成或部分完成的问卷。")
    answers = answers_of(response)
    if item not in questionnaire.path(answers) or item not in answers:
        raise CallError("该题不在此问卷的作答路径上，不能修改。")
    changed = {**answers, **cleaned}
    if questionnaire.path(changed) != questionnaire.path(answers):
        raise CallError("该题的答案决定问卷的跳转，修改后后续题目不再适用；请如实说明情况后重新安排访问。")
    old = {k: v for k, v in answers.items() if k.split(".", 1)[0] == item}
    new = {k: v for k, v in changed.items() if k.split(".", 1)[0] == item}
    if old == new:
        raise CallError("新答案与原答案相同。")
    edit = AnswerEdit(response_id=response.id, item=item, old_value=json.dumps(old, ensure_ascii=False),
                      new_value=json.dumps(new, ensure_ascii=False), reason=reason[:500], user_id=user.id,
                      at=utc_naive(now))
    session.add(edit)
    response.answers = json.dumps(changed, ensure_ascii=False)
    response.updated_at = utc_naive(now)
    derive_into(response, questionnaire, context, changed)
    sync_problem(session, response)
    audit(session, "answer_edit", user, target=f"response:{response.id}",
          detail={"item": item, "old": old, "new": new, "reason": reason})
    session.flush()
    return edit
