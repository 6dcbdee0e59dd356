"""The key-population vocabulary, loaded and validated at start-up from populations.json."""
from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import PopulationLabel
from app.roster.normalize import Vocabulary


class VocabularyError(ValueError):
    pass


def load_vocabulary(path: str | Path) -> Vocabulary:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = data["populations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VocabularyError(f"人群分类配置文件无法读取：{path}（{exc}）") from exc
    codes, names = set(), set()
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("code") or not entry.get("name"):
            raise VocabularyError(f"人群分类配置有误：每项都需要 code 和 name（{entry!r}）")
        if entry["code"] in codes or entry["name"] in names:
            raise VocabularyError(f"人群分类配置有重复项：{entry['code']} / {entry['name']}")
        codes.add(entry["code"])
        names.add(entry["name"])
    vocabulary = Vocabulary.from_config(data)
    if vocabulary.default_code not in vocabulary.names:
        raise VocabularyError("人群分类配置必须包含 code 为 general 的“一般人群”。")
    return vocabulary


def sync_labels(session: Session, vocabulary: Vocabulary) -> dict[str, int]:
    """Make sure every configured population has its row; return code -> id."""
    existing = {label.code: label for label in session.scalars(select(PopulationLabel))}
    for code, name in vocabulary.names.items():
        label = existing.get(code)
        if label is None:
            label = PopulationLabel(code=code, name=name)
            session.add(label)
            existing[code] = label
        elif label.name != name:
            label.name = name
    session.flush()
    return {code: label.id for code, label in existing.items()}
