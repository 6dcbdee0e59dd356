"""The key-population vocabulary (populations.json): the configured populations, their
aliases as rosters spell them, and how one roster cell is read into population codes."""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

LABEL_SEPARATORS = r"[、，,；;/／|\s]+"


@dataclass
class Vocabulary:
    """The configured key populations: code -> display name, plus alias lookup."""

    names: dict[str, str]
    lookup: dict[str, str]
    annual_services: dict[str, int]
    default_code: str = "general"

    @classmethod
    def from_config(cls, data: dict) -> Vocabulary:
        names: dict[str, str] = {}
        lookup: dict[str, str] = {}
        services: dict[str, int] = {}
        for entry in data["populations"]:
            code = entry["code"]
            names[code] = entry["name"]
            services[code] = int(entry.get("annual_services", 0))
            for spelling in (entry["name"], *entry.get("aliases", ())):
                lookup[_label_key(spelling)] = code
        return cls(names=names, lookup=lookup, annual_services=services)

    def parse(self, cell: str) -> tuple[tuple[str, ...], list[str]]:
        """Codes named in one cell (sorted, deduplicated) and the unknown pieces."""
        text = unicodedata.normalize("NFKC", cell or "").strip()
        if not text:
            return (self.default_code,), []
        whole = self.lookup.get(_label_key(text))
        if whole:
            return (whole,), []
        codes: set[str] = set()
        unknown: list[str] = []
        for piece in re.split(LABEL_SEPARATORS, text):
            if not piece:
                continue
            code = self.lookup.get(_label_key(piece))
            if code:
                codes.add(code)
            else:
                unknown.append(piece)
        if len(codes) > 1:
            codes.discard(self.default_code)
        if not codes and not unknown:
            codes.add(self.default_code)
        return tuple(sorted(codes)), unknown


def _label_key(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).replace("～", "-").replace("~", "-")


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
