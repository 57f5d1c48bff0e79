"""Korean text analysis for the document index, with Kiwi (kiwipiepy; its model ships in a package, offline).

Korean glues particles and endings to nouns and stems ("연차휴가는", "받습니다"), so whitespace words never
match across sentences; retrieval compares content morphemes instead (`terms`). Passages are cut at the
sentence boundaries Kiwi finds (`sentences`), which one pass returns together with each sentence's
morphemes. One analyser per process: loading it takes about two seconds.
"""
from __future__ import annotations

import functools
import re
import threading
import unicodedata
from dataclasses import dataclass

# Content morphemes: nouns (NN*), numerals, pronouns, verb and adjective stems, roots, adverbs, Latin
# letters, numbers and Chinese characters. Particles, endings and punctuation carry no topic.
CONTENT_TAGS = ("NN", "NR", "NP", "VV", "VA", "XR", "MAG", "SL", "SN", "SH")
# Periods a question spells out where regulations write a number and a unit ("일주일에 몇 시간" against "1주
# 40시간", "하루" against "1일 8시간"): a passage with that number and unit covers the period. Matched in the
# passage's text, the number with its unit: the unit alone is also a common word (주다, 일 "work").
SPELLED_PERIODS = {word: re.compile(rf"(?<![\d.,]){number}\s*{unit}") for word, (number, unit) in {
    "일주일": (1, "주"), "하루": (1, "일"), "이틀": (2, "일"), "사흘": (3, "일"), "나흘": (4, "일"), "열흘": (10, "일"),
    "보름": (15, "일")}.items()}

# A time of day as regulations write it ("09:00부터 18:00까지"; Kiwi tags it W_SERIAL, no morpheme): its hour and
# 시, so that "몇 시부터" and "9시" find it. ANALYSIS counts changes to what text becomes: an index made under
# another is read again on its next update.
CLOCK = re.compile(r"([01]?\d|2[0-4]):[0-5]\d")
ANALYSIS = 2

_kiwi = None
_lock = threading.Lock()  # one Kiwi object is not documented as safe across threads, and the server has several


def _analyser():
    global _kiwi
    if _kiwi is None:
        from kiwipiepy import Kiwi

        _kiwi = Kiwi()
    return _kiwi


def version() -> str:
    import kiwipiepy

    return kiwipiepy.__version__


@dataclass(frozen=True)
class Sentence:
    start: int           # character span in the text given
    end: int
    terms: tuple[str, ...]


def _content(tokens) -> list[str]:
    found = []
    for t in tokens:
        if t.tag.startswith(CONTENT_TAGS):
            found.append(t.form.lower())
        elif t.tag == "W_SERIAL" and CLOCK.fullmatch(t.form):  # "09:00" read as "9시", as a question asks it
            found += [str(int(t.form.split(":")[0])), "시"]
    return found


def terms(text: str) -> list[str]:
    """The content morphemes of a text, lower-cased, in order (repeats kept: BM25 counts them). NFC first:
    documents are read as NFC, and a question typed on a Mac may arrive decomposed (NFD)."""
    text = unicodedata.normalize("NFC", text)
    if not text.strip():
        return []
    with _lock:
        return _content(_analyser().tokenize(text))


def sentences(text: str) -> list[Sentence]:
    """The sentences of a text with their character spans and content morphemes."""
    if not text.strip():
        return []
    with _lock:
        found = _analyser().split_into_sents(text, return_tokens=True)
    return [Sentence(s.start, s.end, tuple(_content(s.tokens))) for s in found]


@functools.lru_cache(maxsize=1 << 16)
def is_noun(word: str) -> bool:
    """Whether Kiwi reads `word` alone as one noun (날, 명세서), not as several morphemes or another part of speech."""
    with _lock:
        tokens = _analyser().tokenize(word)
    return len(tokens) == 1 and tokens[0].form == word and tokens[0].tag in ("NNG", "NNP")
