"""bench/rag.py's quality part on a tiny corpus written here (no shared data): documents as files, the real
index, and recall and MRR that can be checked by hand."""
from bench import rag


def test_metrics_by_hand():
    rankings = [["a", "b", "c"], ["x", "y", "g"], ["p", "q"]]
    golds = [("a",), ("g",), ("z",)]
    m = rag.rank_metrics(rankings, golds)
    # query 1 found at rank 1, query 2 at rank 3, query 3 never
    assert (m["recall@1"], m["recall@5"], m["recall@20"]) == (round(1 / 3, 4), round(2 / 3, 4), round(2 / 3, 4))
    assert m["mrr@10"] == round((1 + 1 / 3 + 0) / 3, 4)
    assert "all@5" not in m
    multi = rag.rank_metrics([["a", "x", "b"], ["a", "x"]], [("a", "b"), ("a", "b")])
    assert (multi["recall@1"], multi["all@5"], multi["mrr@10"]) == (0.5, 0.5, 1.0)


def test_documents_through_the_real_index(tmp_path):
    corpus = {
        "hr/연차 규정": ("취업규칙", "연차휴가는 입사 1년 후 15일이 주어집니다. 사용하지 않은 연차는 수당으로 정산합니다."),
        "출장비": ("", "국내 출장비는 실비로 정산합니다. 숙박비는 1박에 10만 원까지입니다."),
        ".hidden": ("", "보안 규정: 사내 노트북은 반출 전에 정보보안팀의 승인을 받아야 합니다."),
    }
    doc_of = rag.write_docs(corpus, tmp_path / "docs")
    assert sorted(doc_of) == ["d.hidden.txt", "hr_연차_규정.txt", "출장비.txt"]  # no file is hidden or nested
    assert (tmp_path / "docs" / "hr_연차_규정.txt").read_text(encoding="utf-8").startswith("취업규칙\n연차휴가는")
    queries = {"q": [rag.Query("1", "연차휴가는 며칠인가요?", ("hr/연차 규정",)),
                     rag.Query("2", "노트북을 밖으로 가져가려면 누구의 승인이 필요한가요?", (".hidden",)),
                     rag.Query("3", "숙박비 한도는 얼마인가요?", ("출장비",))]}
    found = rag.measure(tmp_path / "docs", tmp_path / "index", doc_of, queries, per_query=True)
    assert found["documents"] == 3 and found["files_read"] == 3 and found["skipped"] == 0
    assert found["gold_ranks"]["q"] == {"1": [1], "2": [1], "3": [1]}
    assert found["groups"]["q"]["recall@1"] == 1.0 and found["groups"]["q"]["mrr@10"] == 1.0
