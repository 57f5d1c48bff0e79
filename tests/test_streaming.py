"""RowTracker on its own, fed token by token as gen() feeds it, with a byte-level tokenizer of UTF-8 bytes."""
from kochat.streaming import RowTracker

EOS = 2


class ByteTokenizer:
    """Token id = byte + 3, id 2 = end of text: a Korean syllable is three tokens, as in byte-level BPE."""
    eos_token_id = EOS

    def decode(self, ids, skip_special_tokens=True):
        return bytes(i - 3 for i in ids if i >= 3).decode("utf-8", errors="replace")


def tokens(text: str) -> list[int]:
    return [b + 3 for b in text.encode("utf-8")]


def feed(tracker: RowTracker, rows: list[list[int]]) -> list[list[int]]:
    """Every row's tokens, one step at a time (finished rows get padding, as on the GPU); the rows ended each step."""
    ended = []
    for step in range(max(map(len, rows))):
        ended.append(tracker.see([row[step] if step < len(row) else 0 for row in rows]))
    return ended


def test_streamed_pieces_never_split_a_korean_syllable():
    pieces = []
    tracker = RowTracker(ByteTokenizer(), [100], [[]], stream=lambda row, text: pieces.append(text), cancelled=None)
    feed(tracker, [tokens("서울입니다.") + [EOS]])
    assert "".join(pieces) == "서울입니다." == tracker.text(0)
    assert len(pieces) == 6 and not any("\ufffd" in p for p in pieces)  # one piece a syllable, never a byte
    assert tracker.reason == ["stop"] and tracker.tokens == [len(tokens("서울입니다.")) + 1]


def test_a_stop_string_cuts_the_text_and_no_piece_of_it_is_streamed():
    pieces = []
    tracker = RowTracker(ByteTokenizer(), [100], [["###"]], stream=lambda row, text: pieces.append(text),
                         cancelled=None)
    ended = feed(tracker, [tokens("답 #1 ## 끝### 질문")])
    assert tracker.text(0) == "답 #1 ## 끝" and tracker.reason == ["stop"]
    assert "".join(pieces) == "답 #1 ## 끝"  # "#" and "##" were held back, then let go when no "###" followed
    assert [i for i, rows in enumerate(ended) if rows] == [len(tokens("답 #1 ## 끝###")) - 1]  # the GPU is told once


def test_each_row_ends_for_its_own_reason():
    gone = {2}
    tracker = RowTracker(ByteTokenizer(), [3, 100, 100], [[], ["x"], []], stream=None,
                         cancelled=lambda row: row in gone)
    ended = feed(tracker, [tokens("abcdef"), tokens("abxcd"), tokens("abcdef")])
    assert tracker.reason == ["length", "stop", "cancelled"]
    assert [tracker.text(row) for row in range(3)] == ["abc", "ab", "a"]
    assert ended[0] == [2] and ended[2] == [1] and tracker.all_done  # a length the GPU counts itself


def test_without_streams_stops_or_cancellation_the_tokens_are_read_once_at_the_end():
    tracker = RowTracker(ByteTokenizer(), [4, 10], [[], []], stream=None, cancelled=None)
    assert not tracker.per_step
    tracker.finish([tokens("가나"), tokens("다") + [EOS, 0, 0]])
    assert [tracker.text(0), tracker.text(1)] == ["가\ufffd", "다"]  # a limit may end a row mid-syllable
    assert tracker.reason == ["length", "stop"] and tracker.tokens == [4, 4]


def test_the_streamed_pieces_add_up_to_the_answer_when_a_space_comes_before_its_end():
    """A new user's trial: with stop=["런던"] the stream ended "차이라서 " and the answer "차이라서"."""
    for text, stops in [("1시간 차이라서 런던은", ["런던"]), ("답입니다. \n", [])]:
        pieces = []
        tracker = RowTracker(ByteTokenizer(), [100], [stops], stream=lambda row, text: pieces.append(text),
                             cancelled=None)
        feed(tracker, [tokens(text) + [EOS]])
        assert "".join(pieces) == tracker.text(0).strip() == text.split("런던")[0].strip()  # gen()'s answer: stripped


def test_a_stop_string_of_whitespace_stops_as_soon_as_it_is_generated():
    """Review: with the text stripped before the search, stop=["\n"] ran on to the token limit."""
    for stop, expected_tokens in [("\n", len(tokens("답\n"))), ("\n\n", len(tokens("답\n\n")))]:
        pieces = []
        tracker = RowTracker(ByteTokenizer(), [100], [[stop]], stream=lambda row, text: pieces.append(text),
                             cancelled=None)
        feed(tracker, [tokens("답\n\n\n다음 줄") + [EOS]])
        assert tracker.reason == ["stop"] and tracker.tokens == [expected_tokens]
        assert tracker.text(0) == "답" == "".join(pieces)
