"""Follow-up questions in a conversation: turn the last user message into a query that
retrieval can answer on its own.

In a chat, people ask "2025년 뿌리산업 지원예산 총액은?" and then "그럼 작년에는?". The
second message alone retrieves nothing useful: it has no topic, and "작년" means a year
only relative to the first question. :func:`resolve_followup` recognises such follow-ups
and combines them with the earlier question(s), resolving relative years (작년, 올해,
전년, 그 해, 내년 …) against a year the earlier question mentions::

    >>> resolve_followup([
    ...     {"role": "user", "content": "2025년 뿌리산업 지원예산 총액은?"},
    ...     {"role": "assistant", "content": "6,846억원입니다."},
    ...     {"role": "user", "content": "그럼 작년에는?"},
    ... ])
    "2025년 뿌리산업 지원예산 총액은? 작년에는? 2024년 '24년"

A message that stands on its own is returned unchanged. The rules are deliberately
lexical (regular expressions, no morphological analyser), so the function is pure, fast
and usable by every face (``rag chat``, ``POST /chat``) without loading a model.

A message is a follow-up when, after the previous user question exists, it

* starts with a linking word (그럼, 그러면, 그건, 그게, 거기, 그 밖에, 또, 그리고, 그렇다면,
  그중, 반면, and, what about …) and has few content words of its own; or
* refers to a relative time (작년, 올해, 전년, 그 해, 내년 …) with at most
  :data:`MAX_TIME_CONTENT_WORDS` other content words; or
* is a bare "what about X?" (a single word with a topic particle: "광주는?", "울산의 경우는?"); or
* has no content words at all ("왜?", "얼마나?", "더 자세히").

Assistant messages are never mixed into the query: they would add the previous answer's
vocabulary rather than the user's intent.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Sequence

from rag.config import MAX_QUESTION_CHARS
from rag.text.wordlists import load_words

__all__ = ["resolve_followup", "is_followup", "years_in", "MAX_CONTEXT_TURNS"]

#: How many earlier user turns at most feed one resolved query (a long chain of follow-ups
#: keeps only the most recent context).
MAX_CONTEXT_TURNS = 3

#: A message starting with a linking word is a follow-up when it has at most this many
#: content words ("그럼 광주 센터의 장비 수는?" is; a long new question is not).
MAX_LINKED_CONTENT_WORDS = 4

#: A message with a relative-time word is a follow-up when it has at most this many other
#: content words ("작년 예산은?" is; "작년 EU에 수출한 소부장 금액은?" is a question of its own).
MAX_TIME_CONTENT_WORDS = 1

# Linking words that open a follow-up, longest first so "그러면" wins over "그럼".
_LINK_WORDS = sorted(
    (
        "그럼", "그러면", "그렇다면", "그렇담", "그건", "그게", "그거", "그것", "그것도", "그거는", "그것은",
        "거기", "거기서", "거기는", "거기에", "거기엔", "그곳", "그곳은", "그밖에", "그 밖에", "그 외", "그외",
        "또", "또는", "또한", "그리고", "그럼요", "그런데", "근데", "그중", "그 중", "그중에", "그 중에",
        "그중에서", "그 중에서", "반면", "반대로", "아니면", "그래서", "그러니까", "이건", "이거", "이게",
        "저건", "저거", "그때", "그 때", "다음은", "그 다음", "그다음", "추가로", "더", "혹시",
        "and", "also", "what about", "how about", "then",
    ),
    key=len,
    reverse=True,
)
_LINK_RE = re.compile(r"^(?:" + "|".join(re.escape(w) for w in _LINK_WORDS) + r")(?=$|[\s,.?!~…]|[은는도가이요])",
                      re.IGNORECASE)

# Relative years: word → offset from the base year.
_TIME_WORDS: dict[str, int] = {
    "재작년": -2, "지지난해": -2, "작년": -1, "지난해": -1, "지난 해": -1, "전년도": -1, "전년": -1,
    "전해": -1, "올해": 0, "금년": 0, "금년도": 0, "이번 해": 0, "그 해": 0, "그해": 0, "당해": 0,
    "당해연도": 0, "같은 해": 0, "내년": 1, "내년도": 1, "이듬해": 1, "다음 해": 1, "다음해": 1,
    "익년": 1, "후년": 2, "내후년": 2,
}
_TIME_RE = re.compile("|".join(re.escape(w) for w in sorted(_TIME_WORDS, key=len, reverse=True)))

# Years as the corpus writes them: 2025년, 2025, '25년, ’25., ‘25년도.
_YEAR_RE = re.compile(r"(?<![\d,.])(19[5-9]\d|20[0-4]\d)(?![\d])|['‘’`](\d{2})(?![\d])")

# Function words and question fillers that carry no topic (rag/data/words/followup_stop_words.txt).
_STOP_WORDS = frozenset(load_words("followup_stop_words"))

# Particles and endings peeled off a word (rag/data/words/followup_particles.txt), longest first.
_PARTICLES = tuple(sorted(load_words("followup_particles"), key=len, reverse=True))

_PARTICLE_SET = frozenset(_PARTICLES) | {"에는", "엔", "에선", "때는"}

_WORD_RE = re.compile(r"[0-9A-Za-z가-힣'’‘]+")
_BARE_TOPIC_RE = re.compile(r"^\s*[0-9A-Za-z가-힣·]+\s*(?:의\s*경우)?\s*(?:은|는|은요|는요|도|요)\s*[?？]?\s*$")


def _strip_particle(word: str) -> str:
    for p in _PARTICLES:
        if len(word) > len(p) and word.endswith(p):
            return word[: -len(p)]
    return word


def _content_words(text: str) -> list[str]:
    """Words of ``text`` that carry a topic: not fillers, linking words, time words or years."""
    text = _TIME_RE.sub(" ", text)
    text = _YEAR_RE.sub(" ", text)
    out = []
    for raw in _WORD_RE.findall(text):
        word = raw.strip("'’‘").lower()
        if not word or word in _STOP_WORDS:
            continue
        stem = _strip_particle(word)
        if stem in _STOP_WORDS or not stem or word in _PARTICLE_SET:
            continue
        out.append(stem)
    return out


def years_in(text: str) -> list[int]:
    """Four-digit years mentioned in ``text`` in order ('25 is read as 2025)."""
    years = []
    for full, short in _YEAR_RE.findall(text):
        years.append(int(full) if full else 2000 + int(short))
    return years


def _time_offsets(text: str) -> list[tuple[str, int]]:
    return [(m.group(0), _TIME_WORDS[m.group(0)]) for m in _TIME_RE.finditer(text)]


def is_followup(message: str) -> bool:
    """Whether ``message`` needs an earlier question to be understood (see module doc)."""
    text = message.strip()
    if not text:
        return False
    content = _content_words(text)
    if _LINK_RE.match(text) and len(content) <= MAX_LINKED_CONTENT_WORDS:
        return True
    if _time_offsets(text) and len(content) <= MAX_TIME_CONTENT_WORDS:
        return True
    if _BARE_TOPIC_RE.match(text) and len(content) <= 1:
        return True
    return not content and len(text) <= 20


def _strip_link(text: str) -> str:
    """The message without its opening linking word(s) ("그럼 작년에는?" → "작년에는?")."""
    prev = None
    while prev != text:
        prev = text
        text = _LINK_RE.sub("", text, count=1).lstrip(" ,.~…")
    return text


def _year_forms(year: int) -> str:
    """A year as the corpus writes it in prose and in tables: "2024년 '24년"."""
    return f"{year}년 '{year % 100:02d}년"


def _resolve(users: Sequence[str], depth: int) -> tuple[str, int | None]:
    """(query, focus year) for the last of ``users``; the focus year is what a later
    relative-time word refers to."""
    last = users[-1].strip()
    own_years = years_in(last)
    if len(users) < 2 or depth >= MAX_CONTEXT_TURNS or not is_followup(last):
        return last, (own_years[0] if own_years else None)
    prev_query, base = _resolve(users[:-1], depth + 1)
    extra: list[str] = []
    focus = own_years[0] if own_years else base
    offsets = _time_offsets(last)
    if offsets and base is not None and not own_years:
        resolved = []
        for _word, off in offsets:
            year = base + off
            if year not in resolved:
                resolved.append(year)
        extra = [_year_forms(y) for y in resolved]
        focus = resolved[0]
    tail = _strip_link(last) or last
    query = " ".join(part for part in (prev_query, tail, *extra) if part)
    if len(query) > MAX_QUESTION_CHARS:  # keep the newest words; the limit is the retriever's
        query = query[-MAX_QUESTION_CHARS:].lstrip()
    return query, focus


def _user_texts(messages: Iterable[Mapping[str, object]]) -> list[str]:
    out = []
    for m in messages:
        if m.get("role") == "user" and isinstance(m.get("content"), str) and m["content"].strip():
            out.append(m["content"])  # type: ignore[arg-type]
    return out


def resolve_followup(messages: list[dict]) -> str:
    """The retrieval query for the last user message of a conversation.

    Args:
        messages: chat messages, oldest first, each ``{"role": "user" | "assistant",
            "content": str}``. Other roles and empty messages are ignored.

    Returns:
        The last user message unchanged (stripped) when it stands on its own; when it is a
        follow-up, the previous user question(s) followed by the message without its
        linking word and by the years its relative-time words resolve to — e.g.
        "2025년 뿌리산업 지원예산 총액은?" + "그럼 작년에는?" →
        "2025년 뿌리산업 지원예산 총액은? 작년에는? 2024년 '24년". An empty string when
        there is no user message (callers reject it as an empty question).
    """
    users = _user_texts(messages)
    if not users:
        return ""
    return _resolve(users, 0)[0]
