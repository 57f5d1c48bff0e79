"""Search an index: BM25 over Korean morphemes, optionally fused with dense retrieval and re-scored by a
cross-encoder. The one way chat, serving, evaluation and index_ko.py --search find passages.

- BM25 (bm25s) scores the question's content morphemes. In a conversation the earlier user turns are
  scored too, at HISTORY_WEIGHT, so "그럼 2년차는요?" is searched with the question it follows.
- With an embedding model in the index, the question's vector ranks passages by cosine similarity, and
  the two rankings are fused by reciprocal rank (RRF, k=60): no score scales to calibrate.
- With a reranker, the best RERANK_CANDIDATES are re-scored by reading question and passage together.
  Without one, of the best RERANK_CANDIDATES those sharing none of the question's topic words (see `relevance`)
  come last: an FAQ row phrased like the question ("…은 얼마인가요?") does not outrank the passage on its topic.

Every hit carries `relevance` in 0..1, which decides whether the documents answer the question at all:
the IDF-weighted share of the question's topic terms (QUESTION_WORDS left out) found in the passage (or, with an embedding model, the
cosine similarity when higher; with a reranker, its score).
"""
from __future__ import annotations

import bisect
import itertools
from dataclasses import asdict, dataclass

import numpy as np

from . import korean
from .embedding import Embedder, Reranker
from .store import Index

HISTORY_WEIGHT = 0.5      # earlier user turns count half as much as the question itself
RRF_K = 60                # reciprocal rank fusion constant (Cormack et al. 2009)
FUSION_CANDIDATES = 100   # from each ranking, before fusing
RERANK_CANDIDATES = 20    # passages the cross-encoder reads
UNSEEN_PASSAGES = 1000    # a question's word no passage has weighs as one in none of this many (or of the index's
                          # passages, if more): in a small index every word is rare, and a word the documents never
                          # use is the surest sign they do not cover the question (bench/RAG.md, "judged covered")
COMPOUND_PART = 2         # shortest part a compound noun is split into: one syllable would match too much
COMPOUND_TAIL = 3         # longest noun a question's word is completed with into a passage's compound (월급 → 월급날)
COMPOUND_CANDIDATES = 20  # compounds a word is completed from, at most: each is checked with Kiwi (once: cached)
QUESTION_CHARS = 2000     # the end of a question that is analysed: Kiwi takes ~70 µs a character, behind one
HISTORY_CHARS = 500       # lock, so a 300k-character question would stall every search for 20 s
# Morphemes of how a question is asked, not what it asks about ("어떻게 되나요", "며칠", "얼마까지 …할 수 있나요"):
# left out of `relevance`, so a question is judged covered by its topic words alone. (BM25 still counts them:
# they help match FAQ rows, which are phrased as questions.)
QUESTION_WORDS = frozenset("하 되 있 없 가 오 나오 보 주 받 않 쓰 알 어떻 이렇 그렇 무엇 뭐 어디 언제 누구 왜 "
                           "얼마 얼마나 며칠 몇 수 것 때 등 및 좀 정도 알리 궁금 궁금하 말하 설명 가능 방법".split())


@dataclass
class Hit:
    n: int                 # rank, 1 = best; answers cite it as [n]
    source: str
    page: int | None
    heading: str
    row: int | None
    start: int
    end: int
    text: str
    score: float           # what ranked it: BM25, fused RRF or reranker score
    relevance: float       # 0..1, see the module docstring
    index: str = ""        # the index's name

    def to_dict(self) -> dict:
        d = asdict(self)
        d["score"], d["relevance"] = round(self.score, 4), round(self.relevance, 4)
        return d

    @property
    def where(self) -> str:
        """"취업규칙.md · 3쪽 · 제12조 연차휴가": file, page or row, innermost heading."""
        parts = [self.source]
        if self.page is not None:
            parts.append(f"{self.page}쪽")
        if self.row is not None:
            parts.append(f"{self.row}행")
        if self.heading:
            parts.append(self.heading.split(" > ")[-1])
        return " · ".join(parts)


def covers(hits: list[Hit], min_relevance: float) -> bool:
    """Whether the passages found cover the question: one of them reaches min_relevance (chat, serving and
    index_ko.py judge alike)."""
    return bool(hits) and max(h.relevance for h in hits) >= min_relevance


def korean_word(term: str) -> bool:
    return bool(term) and all("가" <= c <= "힣" for c in term)


class Searcher:
    """An open index with the models it needs: the embedding model it was built with, and a reranker."""

    def __init__(self, index: Index, reranker: str = "", device: str | None = None, name: str = ""):
        self.index, self.name = index, name or index.name  # the name hits carry: the server's, else the folder's
        model = index.settings.get("embedding_model", "")
        self.embedder = Embedder(model, device) if model and index.embeddings is not None else None
        self.reranker = Reranker(reranker, device) if reranker else None
        bm25 = index.bm25
        if bm25 is not None:
            indptr = bm25.scores["indptr"]
            df = np.diff(indptr).astype(np.float64)
            n = max(len(index.passages), 1)
            self.idf = np.log(1 + (n - df + 0.5) / (df + 0.5))  # Lucene's BM25 idf, per vocabulary id
        self._korean_vocab = None  # sorted, made when a question first needs it (completed)

    def search(self, question: str, top_k: int = 5, history: list[str] = ()) -> list[Hit]:
        passages = self.index.passages
        if not passages or top_k < 1:
            return []
        question, history = question[-QUESTION_CHARS:], [turn[-HISTORY_CHARS:] for turn in history]
        q_terms = self.match_compounds(korean.terms(question))
        h_terms = self.match_compounds([t for turn in history for t in korean.terms(turn)])
        lexical = self.bm25_scores(q_terms) + HISTORY_WEIGHT * self.bm25_scores(h_terms)
        cosine = None
        if self.embedder is not None:
            cosine = self.index.embeddings @ self.embedder.encode([question])[0]
            dense = cosine
            if history:
                dense = cosine + HISTORY_WEIGHT * (self.index.embeddings @ self.embedder.encode([" ".join(history)])[0])
            score = rrf([lexical, dense], FUSION_CANDIDATES)
        else:
            score = lexical
        order = top(score, max(top_k, RERANK_CANDIDATES))
        order = [i for i in order if score[i] > 0]
        # relevance is the question's own: after "연차는 며칠?", "오늘 날씨 어때?" is not covered by leave rules.
        # Only a question with no topic word of its own ("그럼 2년차는요?" has one: 2년차) leans on the turns before.
        topic = [x for x in q_terms if x not in QUESTION_WORDS] or [x for x in h_terms if x not in QUESTION_WORDS]
        relevance = self.coverage(topic, np.array(order, dtype=np.int64))
        if cosine is not None:
            relevance = np.maximum(relevance, np.clip(cosine[order], 0, 1))
        if self.reranker is None:
            # a passage that shares only how the question is asked ("…은 얼마인가요?" with an FAQ row about something
            # else) goes after every passage that shares what it asks about; BM25's order otherwise
            ranked = np.argsort(relevance <= 0, kind="stable")
            order, relevance = [order[j] for j in ranked], relevance[ranked]
        elif order:
            query = " ".join([*history, question])
            relevance = self.reranker.scores(query, [passages[i]["text"] for i in order])
            ranked = np.argsort(-relevance, kind="stable")
            order, relevance = [order[j] for j in ranked], relevance[ranked]
            score = np.zeros(len(passages))
            score[order] = relevance
        hits = []
        for rank, (i, rel) in enumerate(zip(order[:top_k], relevance[:top_k]), start=1):
            p = passages[i]
            hits.append(Hit(rank, p["source"], p["page"], p["heading"], p["row"], p["start"], p["end"], p["text"],
                            float(score[i]), float(rel), self.name))
        return hits

    def match_compounds(self, terms: list[str]) -> list[str]:
        """A question's Korean terms that no passage has, matched to those that passages have: Kiwi reads a compound
        noun whole in one text and in parts in another. Two in a row joined ("재택" "근무": 재택근무), one split in two
        ("점심시간": 점심, 시간), one completed to the compound a passage has ("월급": 월급날). Numbers and Latin words
        stay as they are ("1830" is not 18 and 30)."""
        vocab = self.index.bm25.vocab_dict
        out, i = [], 0
        while i < len(terms):
            t, after = terms[i], terms[i + 1] if i + 1 < len(terms) else ""
            if (korean_word(t) and korean_word(after) and (t not in vocab or after not in vocab)
                    and t + after in vocab):
                out.append(t + after)
                i += 2
                continue
            i += 1
            if t in vocab or not korean_word(t):
                out.append(t)
                continue
            cut = next((c for c in range(COMPOUND_PART, len(t) - COMPOUND_PART + 1)
                        if t[:c] in vocab and t[c:] in vocab), None)
            out += [t[:cut], t[cut:]] if cut is not None else [self.completed(t)]
        return out

    def completed(self, term: str) -> str:
        """The most common compound noun of the passages that begins with `term` and goes on with a noun of up to
        COMPOUND_TAIL syllables (월급 → 월급날); `term` itself where none does."""
        if len(term) < COMPOUND_PART or not korean.is_noun(term):  # a stem is no head: 아프 is not 아프리카's
            return term
        if self._korean_vocab is None:
            self._korean_vocab = sorted(t for t in self.index.bm25.vocab_dict if korean_word(t))
        vocab, ids = self._korean_vocab, self.index.bm25.vocab_dict
        found = []
        for w in itertools.islice(vocab, bisect.bisect_left(vocab, term), None):  # those after it, not a copy
            if not w.startswith(term) or len(found) == COMPOUND_CANDIDATES:
                break
            if len(w) - len(term) <= COMPOUND_TAIL and korean.is_noun(w[len(term):]):
                found.append(w)
        return min(found, key=lambda w: self.idf[ids[w]], default=term)  # the lowest idf: in most passages

    def bm25_scores(self, terms: list[str]) -> np.ndarray:
        known = [t for t in terms if t in self.index.bm25.vocab_dict]
        if not known:
            return np.zeros(len(self.index.passages), dtype=np.float32)
        return self.index.bm25.get_scores(known)

    def coverage(self, terms: list[str], passage_ids: np.ndarray) -> np.ndarray:
        """For each passage: the IDF-weighted share of the distinct query terms it contains. A spelled-out period
        ("일주일") is also found where the passage writes its number and unit ("1주"; korean.SPELLED_PERIODS)."""
        bm25, vocab = self.index.bm25, self.index.bm25.vocab_dict
        n = max(len(self.index.passages), UNSEEN_PASSAGES)
        unseen = float(np.log(1 + (n + 0.5) / 0.5))  # Lucene's idf for a term in no passage (UNSEEN_PASSAGES)
        distinct = list(dict.fromkeys(terms))
        weights = [float(self.idf[vocab[t]]) if t in vocab else unseen for t in distinct]
        found = np.zeros(len(passage_ids))
        total = sum(weights)
        if total <= 0:
            return found
        indptr, indices = bm25.scores["indptr"], bm25.scores["indices"]
        for term, weight in zip(distinct, weights):
            has = np.zeros(len(passage_ids), dtype=bool)
            if term in vocab:  # a term's passages, sorted (bm25s' CSC matrix): binary search, not a scan of the list
                postings = indices[indptr[vocab[term]]:indptr[vocab[term] + 1]]
                if len(postings):
                    at = np.minimum(np.searchsorted(postings, passage_ids), len(postings) - 1)
                    has = postings[at] == passage_ids
            if term in korean.SPELLED_PERIODS:
                written = korean.SPELLED_PERIODS[term]
                has |= [bool(written.search(self.index.passages[i]["text"])) for i in passage_ids]
            found += weight * has
        return found / total


def top(score: np.ndarray, k: int) -> list[int]:
    k = min(k, len(score))
    best = np.argpartition(-score, k - 1)[:k]
    return best[np.argsort(-score[best], kind="stable")].tolist()


def rrf(scores: list[np.ndarray], candidates: int) -> np.ndarray:
    """Reciprocal rank fusion of several rankings of the same passages (only their top `candidates` count)."""
    fused = np.zeros(len(scores[0]))
    for s in scores:
        for rank, i in enumerate(top(s, candidates), start=1):
            if s[i] > 0:
                fused[i] += 1.0 / (RRF_K + rank)
    return fused
