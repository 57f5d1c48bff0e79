"""Searching an index: known questions find their passages in every sample format, follow-ups are searched with
the conversation, and the optional embedding model and reranker are wired in (tiny random models, offline)."""
import numpy as np
import pytest
from support import INDEX_SETTINGS, write_followup_docs

from kochat.documents import indexing, store
from kochat.documents.embedding import Embedder
from kochat.documents.retrieval import Searcher


@pytest.mark.parametrize("question, source, where", [
    ("1년 이상 근속한 직원의 연차휴가는 며칠인가요?", "취업규칙.md", "제12조 연차휴가"),
    ("서울 출장 숙박비 상한은 얼마인가요?", "출장비_규정.docx", "숙박비"),
    ("비밀번호는 몇 자 이상이어야 하고 얼마마다 바꾸나요?", "정보보안_규정.hwpx", ""),
    ("본인 결혼 경조금은 얼마인가요?", "복리후생_안내.pdf", "1쪽"),
    ("회의실 예약은 한 번에 최대 몇 시간까지 가능한가요?", "사내_FAQ.csv", "행"),
    ("등산 동호회 회비는 얼마인가요?", "사내_동호회.html", ""),
])
def test_known_questions_find_their_passage_first(sample_index, question, source, where):
    best = sample_index.search(question, top_k=5)[0]
    assert best.source == source and where in best.where and best.n == 1 and 0 < best.relevance <= 1


def test_hits_are_ranked_and_an_unrelated_question_has_no_relevant_passage(sample_index):
    hits = sample_index.search("연차휴가 신청", top_k=4)
    assert [h.n for h in hits] == [1, 2, 3, 4] and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.index == "company" and h.text for h in hits)
    unrelated = sample_index.search("화성 탐사 로켓의 발사 일정", top_k=5)
    assert all(h.relevance < 0.3 for h in unrelated)
    assert sample_index.search("", top_k=5) == [] and sample_index.search("연차", top_k=0) == []


def test_a_spelled_out_period_is_covered_by_the_number_and_unit_a_regulation_writes(sample_index):
    best = sample_index.search("일주일에 몇 시간 일하나요?", top_k=1)[0]  # the rules: "1주의 근무시간은 … 40시간으로 한다"
    assert "제10조 근무시간" in best.where and best.relevance >= 0.5  # 0.28 when 일주일 counted as missing
    # the unit alone is no period: "주" is also 주다, "일" work; a question about coffee stays not covered
    assert all(h.relevance < 0.3 for h in sample_index.search("일주일 내내 커피 마셔도 되나요?", top_k=5))


def test_a_compound_noun_read_whole_in_a_question_finds_its_parts_in_a_passage(sample_index):
    # Kiwi reads "점심시간" as one noun alone, as 점심 + 시간 in "점심시간은 12:00부터 13:00까지이며": no match before
    best = sample_index.search("점심시간", top_k=1)[0]
    assert "제10조 근무시간" in best.where and best.relevance == 1
    # a number or Latin word no passage has stays whole: "1830" is not 18 and 30 (the FAQ's "18시" has 18)
    assert sample_index.match_compounds(["1830", "vpnserver", "점심시간"]) == ["1830", "vpnserver", "점심", "시간"]


def test_a_compound_the_passages_read_whole_is_found_by_its_parts_or_its_head(docs, tmp_path):
    """An HR admin's trial: Kiwi reads 월급날 and 육아휴직 whole in these documents and "월급", "육아 휴직" in a
    question, which then found nothing of them ("월급 언제 들어와요?" was judged not covered by the row answering it)."""
    (docs / "급여_FAQ.csv").write_text("질문,답변\n월급날이 언제인가요?,매월 25일입니다.\n", encoding="utf-8")
    (docs / "육아.md").write_text("# 육아 지원\n\n육아휴직은 자녀 1명당 1년까지 쓸 수 있다. 아프리카 근무자도 같다.\n",
                                 encoding="utf-8")
    indexing.update_index(str(docs), str(tmp_path / "index"), **INDEX_SETTINGS)
    searcher = Searcher(store.open_index(tmp_path / "index"))
    assert searcher.match_compounds(["월급", "육아", "휴직", "근무", "1830"]) == ["월급날", "육아휴직", "근무", "1830"]
    best = searcher.search("월급 언제 들어와요?", top_k=1)[0]
    assert best.source == "급여_FAQ.csv" and best.relevance >= 0.3
    best = searcher.search("육아 휴직은 얼마나 쓸 수 있어요?", top_k=1)[0]
    assert best.source == "육아.md" and best.relevance >= 0.3
    assert searcher.match_compounds(["헬스장"]) == ["헬스장"]  # no compound of the passages begins with it
    assert searcher.match_compounds(["아프"]) == ["아프"]  # a stem (아프다) is no head of 아프리카 (review)


def test_a_time_of_day_written_0900_answers_a_question_asking_what_time(sample_index):
    # the rules write "근무시간은 09:00부터 18:00까지"; a FAQ row writes "18시": both are read as hour and 시
    best = sample_index.search("근무시간은 몇 시부터 몇 시까지인가요?", top_k=1)[0]
    assert "제10조 근무시간" in best.where and best.relevance == 1


def test_a_question_about_what_the_documents_never_mention_is_not_covered_by_one_common_word(sample_index):
    # 헬스장 and 수영장 are in no document; 지원 and 회사 are in many: 0.39 and 0.26 when an unseen word weighed as
    # the index's rarest, which in a small index is barely more than a common one
    for question in ("헬스장 지원 있나요?", "회사 수영장은 어디에 있나요?"):
        assert all(h.relevance < 0.3 for h in sample_index.search(question, top_k=3)), question
    # and how a question is asked ("얼마나 쓸 수 있는지 궁금해요") is no topic word the passage lacks
    best = sample_index.search("병가는 얼마나 쓸 수 있는지 궁금해요", top_k=1)[0]
    assert "제13조 병가" in best.where and best.relevance == 1

def test_how_a_question_is_asked_covers_nothing(sample_index):
    # no document mentions 수당; "나오나요" is how it is asked, and a FAQ row that says "나옵니다" does not cover it
    assert all(h.relevance < 0.3 for h in sample_index.search("수당이 나오나요?", top_k=5))


def test_a_passage_sharing_only_how_the_question_is_asked_never_outranks_one_on_its_topic(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "복지.txt").write_text("복지포인트는 얼마인가요? 얼마인가요?", encoding="utf-8")  # an FAQ row, as asked
    (docs / "주차장_안내.txt").write_text("주차장 안내\n" + "본사 지하 주차장은 직원에게 열려 있으며 입차는 사원증으로 한다. "
                                      "방문객은 안내데스크에서 등록한다. " * 3 + "직원 주차비는 월 5만 원이다.",
                                      encoding="utf-8")
    indexing.update_index(str(docs), str(tmp_path / "index"), **INDEX_SETTINGS)
    hits = Searcher(store.open_index(tmp_path / "index")).search("주차비는 얼마인가요?", top_k=2)
    assert [h.source for h in hits] == ["주차장_안내.txt", "복지.txt"]  # BM25 alone put the FAQ row first
    assert hits[0].relevance == 1 and hits[1].relevance == 0


@pytest.fixture(scope="module")
def followups(tmp_path_factory):
    docs = write_followup_docs(tmp_path_factory.mktemp("followup-docs"))
    folder = tmp_path_factory.mktemp("followup") / "index"
    indexing.update_index(str(docs), str(folder), **INDEX_SETTINGS)
    return Searcher(store.open_index(folder))


def test_a_follow_up_is_searched_with_the_question_it_follows(followups):
    alone = followups.search("그럼 2년차는요?", top_k=3)
    after_leave = followups.search("그럼 2년차는요?", top_k=3, history=["연차휴가는 며칠인가요?"])
    after_training = followups.search("그럼 2년차는요?", top_k=3, history=["신입사원 교육은 몇 시간인가요?"])
    assert alone[0].source == "동호회.md"  # alone, the shortest passage with "2년차" wins
    assert after_leave[0].source == "연차.md" and after_training[0].source == "교육.md"


def test_an_embedding_model_adds_dense_retrieval_and_updates_reuse_unchanged_vectors(docs, tmp_path,
                                                                                       tiny_embedding_model,
                                                                                       monkeypatch):
    folder = tmp_path / "index"
    indexing.update_index(str(docs), str(folder), embedding_model=tiny_embedding_model, **INDEX_SETTINGS)
    index = store.open_index(folder)
    assert index.embeddings.shape == (len(index.passages), 32)
    assert np.allclose(np.linalg.norm(index.embeddings, axis=1), 1, atol=1e-5)
    searcher = Searcher(index)
    assert searcher.embedder is not None and searcher.embedder.name == tiny_embedding_model
    hits = searcher.search("연차휴가는 며칠인가요?", top_k=5)
    assert len(hits) == 5 and all(0 <= h.relevance <= 1 for h in hits)
    assert hits[0].score == pytest.approx(max(h.score for h in hits)) and hits[0].score <= 2 / 61  # fused RRF

    encoded = []
    real = Embedder.encode
    monkeypatch.setattr(Embedder, "encode", lambda self, texts, progress=False: encoded.extend(texts) or real(self, texts))
    (docs / "주차.md").write_text("# 주차\n\n지하 주차장은 직원 전용입니다.\n", encoding="utf-8")
    indexing.update_index(str(docs), str(folder), embedding_model=tiny_embedding_model, **INDEX_SETTINGS)
    assert encoded == ["지하 주차장은 직원 전용입니다."]  # only the new file's passage was embedded
    updated = store.open_index(folder)
    kept = [i for i, p in enumerate(updated.passages) if p["source"] != "주차.md"]
    assert np.array_equal(updated.embeddings[kept], index.embeddings)


def test_a_reranker_reorders_the_candidates_by_its_scores(sample_index, tiny_reranker):
    searcher = Searcher(sample_index.index, reranker=tiny_reranker)
    hits = searcher.search("출장비 정산 기한", top_k=5)
    expected = searcher.reranker.scores("출장비 정산 기한", [h.text for h in hits])
    assert [h.relevance for h in hits] == pytest.approx(expected.tolist(), abs=1e-6)
    assert [h.relevance for h in hits] == sorted((h.relevance for h in hits), reverse=True)


def test_without_sentence_transformers_an_embedding_model_is_one_line(monkeypatch):
    import sys

    from kochat.documents.embedding import Reranker
    from kochat.errors import UserError

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # not installed: the README's first command
    for kind in (Embedder, Reranker):
        with pytest.raises(UserError, match="needs sentence-transformers: pip install sentence-transformers==6.2.0"):
            kind("/models/any")
