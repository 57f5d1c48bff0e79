"""Grounded training rows: the gold passage among distractors, in the context block answering uses."""
from kochat.documents import grounding
from kochat.documents.training import ground_rows

ROWS = [{"instruction": "연차는 며칠?", "input": "1년 이상 근속하면 15일을 준다.", "output": "15일입니다."},
        {"instruction": "숙박비 상한은?", "input": "서울 숙박비는 10만원까지다.", "output": "10만원입니다."},
        {"instruction": "수도는?", "input": "", "output": "서울입니다."},
        {"instruction": "병가는?", "input": "병가는 연 60일이다.", "output": "60일입니다."},
        {"text": "### 질문: 이미 렌더링됨\n\n### 답변: 그대로"}]


def test_rows_with_an_input_get_the_gold_among_distractors_and_others_stay():
    out, grounded = ground_rows(ROWS, distractors=2, seed=0)
    assert grounded == 3 and out[2] == ROWS[2] and out[4] == ROWS[4]
    first = out[0]["input"]
    assert first.startswith(grounding.INSTRUCTION + "\n\n[1] 제공된 자료\n")
    assert first.count("\n\n[") == 3 and "[3] 제공된 자료\n" in first  # gold + 2 distractors, numbered
    assert "1년 이상 근속하면 15일을 준다." in first and out[0]["output"] == "15일입니다."
    assert ground_rows(ROWS, distractors=2, seed=0) == (out, grounded)  # seeded
    positions = set()
    for seed in range(20):
        blocks = ground_rows(ROWS, 2, seed)[0][0]["input"].split("\n\n")[1:]
        positions.add(next(i for i, b in enumerate(blocks) if b.endswith("15일을 준다.")))
    assert positions == {0, 1, 2}  # the gold is not always first


def test_distractors_from_an_index_are_retrieved_for_the_question(sample_index):
    rows = [{"instruction": "서울 출장 숙박비 상한은?", "input": "서울 숙박비 상한은 10만원이다.", "output": "10만원."}]
    out, grounded = ground_rows(rows, distractors=2, seed=1, searcher=sample_index)
    blocks = out[0]["input"].split("\n\n")[1:]
    assert grounded == 1 and len(blocks) == 3
    assert all(b.split("\n")[0].endswith("] 제공된 자료") for b in blocks)  # one label: no hint which is the gold
    assert any("1박당" in b for b in blocks)  # a hard negative from the documents (출장비 규정 제6조)
