"""Passages are whole Korean sentences within a size, overlapping a little, each keeping where it came from."""
from kochat.documents import korean
from kochat.documents.chunking import chunk, spans
from kochat.documents.readers import Section

RULES = ("제1조 목적. 이 규정은 연차휴가를 정한다. 입사 1년 미만인 직원은 1개월 개근 시 1일을 받는다! "
         "1년 이상 근속한 직원은 15일을 받는다. 3년 이상 근속하면 2년마다 1일을 더한다. "
         "휴가는 3일 전까지 한빛포털에서 신청한다. 반차는 4시간이다. 쓰지 않은 휴가는 알린다.")


def sentence_ends(text):
    return {s.end for s in korean.sentences(text)}


def test_passages_are_whole_sentences_within_the_size_and_cover_the_text():
    out = spans(RULES, chunk_chars=80, overlap_chars=30)
    ends, starts = sentence_ends(RULES), {s.start for s in korean.sentences(RULES)}
    assert len(out) > 2
    for start, end, _ in out:
        assert end - start <= 80 and start in starts and end in ends   # cut at sentence boundaries only
    covered = set()
    for start, end, _ in out:
        covered |= set(range(start, end))
    assert all(i in covered for i, c in enumerate(RULES) if not c.isspace())  # no sentence lost
    for (s1, e1, _), (s2, e2, _) in zip(out, out[1:]):
        assert s1 < s2 and e1 < e2 and e1 - s2 <= 30                      # moving on; overlap within bound


def test_overlap_repeats_the_trailing_sentence_and_zero_overlap_repeats_nothing():
    with_overlap = spans(RULES, chunk_chars=80, overlap_chars=40)
    assert any(e1 > s2 for (_, e1, _), (s2, _, _) in zip(with_overlap, with_overlap[1:]))
    without = spans(RULES, chunk_chars=80, overlap_chars=0)
    assert all(e1 <= s2 for (_, e1, _), (s2, _, _) in zip(without, without[1:]))


def test_a_sentence_longer_than_the_size_is_cut_at_the_size():
    table = "항목 | 금액 " * 60  # a flattened table: one "sentence" of 479 characters
    out = spans(table, chunk_chars=100, overlap_chars=0)
    assert len(out) == 5 and all(e - s <= 100 for s, e, _ in out)
    assert out[0][0] == 0 and out[-1][1] == len(table.rstrip())


def test_terms_carry_the_title_and_heading_and_spans_index_the_section_text():
    sections = [Section("1년 이상 근속한 직원은 15일을 받는다.", None, "제2장 근무 > 제12조 연차휴가", None),
                Section("숙박비는 서울 10만원이다.", 3, "", None)]
    first, second = chunk("규정/취업규칙.md", "취업규칙", sections, chunk_chars=500, overlap_chars=100)
    assert first.text == sections[0].text[first.start:first.end] and first.heading.endswith("연차휴가")
    assert {"취업", "규칙", "연차", "휴가", "근속", "15"} <= set(first.terms)
    assert second.page == 3 and "숙박비" in second.terms and "연차" not in second.terms
    assert first.to_dict()["source"] == "규정/취업규칙.md" and "terms" not in first.to_dict()
