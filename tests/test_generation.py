import pytest
import torch

from kochat import modeling, tiny
from kochat.generation import gen
from kochat.tokenization import encode_prompt

QUESTIONS = ["한국의 수도는 어디인가요?", ("다음 단어의 반대말을 쓰세요.", "크다"), "하늘은 왜 파란가요?"]


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=True).eval()


def plain_generate(model, tokenizer, template, question, max_new_tokens):
    q, i = (question, "") if isinstance(question, str) else question
    ids = torch.tensor([encode_prompt(tokenizer, template.prompt(q, i))])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, eos_token_id=2, pad_token_id=0)
    return out[0, ids.shape[1]:].tolist()


def test_greedy_gen_matches_plain_generate_token_for_token(model, tiny_tokenizer, koalpaca_template):
    for question in QUESTIONS:
        answer = gen(model, tiny_tokenizer, koalpaca_template, question, max_new_tokens=20)[0]
        expected = plain_generate(model, tiny_tokenizer, koalpaca_template, question, 20)
        stopped = 2 in expected
        if stopped:
            expected = expected[: expected.index(2) + 1]
        assert answer.text == tiny_tokenizer.decode(expected, skip_special_tokens=True).strip()
        assert answer.new_tokens == len(expected)  # the end of text counts as a generated token
        assert answer.finish_reason == ("stop" if stopped else "length")


def test_a_batch_gives_the_same_answers_as_one_at_a_time(model, tiny_tokenizer, koalpaca_template):
    batch = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS, max_new_tokens=16)
    single = [gen(model, tiny_tokenizer, koalpaca_template, q, max_new_tokens=16)[0] for q in QUESTIONS]
    assert [a.text for a in batch] == [a.text for a in single]
    assert [a.question for a in batch] == ["한국의 수도는 어디인가요?", "다음 단어의 반대말을 쓰세요.", "하늘은 왜 파란가요?"]
    assert batch[1].input == "크다"


def test_stops_at_end_of_text_and_decodes_only_new_tokens(model, tiny_tokenizer, koalpaca_template):
    answers = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS, max_new_tokens=200)
    for a in answers:
        assert "### 질문" not in a.text and "<|endoftext|>" not in a.text
        assert a.finish_reason == "stop" and a.new_tokens <= 200
    short = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS[0], max_new_tokens=1)[0]
    assert short.new_tokens == 1 and short.seconds > 0 and short.tokens_per_s > 0


def test_sampling_is_reproducible_with_a_seed(model, tiny_tokenizer, koalpaca_template):
    torch.manual_seed(0)
    a = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS[0], max_new_tokens=12, temperature=0.9, top_p=0.9)
    torch.manual_seed(0)
    b = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS[0], max_new_tokens=12, temperature=0.9, top_p=0.9)
    assert a[0].text == b[0].text


@pytest.mark.parametrize("four_bit", [True, False])
@pytest.mark.parametrize("fast", [False, True])
def test_a_left_padded_batch_matches_plain_generate_token_for_token(tiny_tokenizer, koalpaca_template, four_bit, fast):
    # gen() runs its own token loop (it never waits for the GPU); it must pick what generate() picks
    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=four_bit).eval()
    prompts = [encode_prompt(tiny_tokenizer, koalpaca_template.prompt(*((q, "") if isinstance(q, str) else q)))
               for q in QUESTIONS]
    width = max(map(len, prompts))
    assert len(set(map(len, prompts))) > 1  # rows of different lengths: left padding is exercised
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=30, do_sample=False, eos_token_id=2,
                         pad_token_id=0)[:, width:].tolist()
    answers = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS, max_new_tokens=30, fast=fast)
    for row, answer in zip(out, answers):
        expected = row[: row.index(2) + 1] if 2 in row else row
        assert answer.new_tokens == len(expected)
        assert answer.text == tiny_tokenizer.decode(expected, skip_special_tokens=True).strip()


@pytest.mark.parametrize("four_bit", [True, False])
def test_fast_mode_gives_the_same_greedy_tokens(tiny_tokenizer, koalpaca_template, four_bit):
    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=four_bit).eval()
    default = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS, max_new_tokens=24)
    fast = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS, max_new_tokens=24, fast=True)
    assert [(a.text, a.new_tokens, a.finish_reason) for a in fast] == \
           [(a.text, a.new_tokens, a.finish_reason) for a in default]


def test_fast_mode_pads_a_batch_to_a_power_of_two_and_hides_the_filler_rows(model, tiny_tokenizer, koalpaca_template):
    from kochat import generation

    seen_batches, streamed = [], set()
    decode = generation.decode
    generation.decode = lambda model, input_ids, *a, **k: seen_batches.append(len(input_ids)) or decode(model, input_ids, *a, **k)
    try:
        answers = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS, max_new_tokens=8, fast=True,
                      stream=lambda i, text: streamed.add(i), cancelled=lambda i: i > 2 and 1 / 0)
    finally:
        generation.decode = decode
    assert seen_batches == [4] and len(answers) == 3  # 3 questions decoded as 4 rows, answered as 3
    assert streamed == {0, 1, 2}  # the filler row is never streamed, nor asked whether its caller left


def test_min_new_tokens_forces_full_length(model, tiny_tokenizer, koalpaca_template):
    answers = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS, max_new_tokens=40, min_new_tokens=40)
    assert [(a.new_tokens, a.finish_reason) for a in answers] == [(40, "length")] * len(QUESTIONS)


def test_streamed_pieces_make_each_answer(model, tiny_tokenizer, koalpaca_template):
    pieces = {0: [], 1: [], 2: []}
    answers = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS, max_new_tokens=40,
                  stream=lambda i, text: pieces[i].append(text))
    for i, answer in enumerate(answers):
        assert "".join(pieces[i]).strip() == answer.text
        assert not any("\ufffd" in p for p in pieces[i])  # no half-decoded Korean syllables
    assert max(len(p) for p in pieces.values()) > 1


def test_each_row_keeps_its_own_limit_and_stop_strings(model, tiny_tokenizer, koalpaca_template):
    alone = [gen(model, tiny_tokenizer, koalpaca_template, q, max_new_tokens=30)[0] for q in QUESTIONS]
    word = alone[2].text.split()[1]  # a stop string that occurs in the third answer
    pieces = []
    batch = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS, max_new_tokens=[30, 3, 30],
                stop=[[], [], [word]], stream=lambda i, text: pieces.append(text) if i == 2 else None)
    assert batch[0].text == alone[0].text and batch[0].finish_reason == alone[0].finish_reason
    assert batch[1].new_tokens == 3 and batch[1].finish_reason == "length"
    assert batch[2].text == alone[2].text[: alone[2].text.index(word)].strip()
    assert batch[2].finish_reason == "stop" and word not in "".join(pieces)


def test_a_cancelled_row_stops_and_the_others_go_on(model, tiny_tokenizer, koalpaca_template):
    batch = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS, max_new_tokens=30, min_new_tokens=30,
                cancelled=lambda i: i == 1)
    assert batch[1].finish_reason == "cancelled" and batch[1].new_tokens == 1
    assert [a.new_tokens for a in (batch[0], batch[2])] == [30, 30]


def test_usage_counts_prompt_tokens(model, tiny_tokenizer, koalpaca_template):
    from kochat.tokenization import encode_prompt

    answer = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS[0], max_new_tokens=5)[0]
    assert answer.prompt_tokens == len(encode_prompt(tiny_tokenizer, koalpaca_template.prompt(QUESTIONS[0])))


def test_a_conversation_and_a_raw_prompt_are_answered_like_their_rendered_text(model, tiny_tokenizer,
                                                                              koalpaca_template):
    messages = [{"role": "user", "content": "한국의 수도는?"}, {"role": "assistant", "content": "서울입니다."},
                {"role": "user", "content": "일본은?"}]
    chat = gen(model, tiny_tokenizer, koalpaca_template, messages, max_new_tokens=16)[0]
    raw = gen(model, tiny_tokenizer, None, koalpaca_template.chat(messages), max_new_tokens=16)[0]
    assert chat.question == "일본은?" and chat.text == raw.text
    two = gen(model, tiny_tokenizer, koalpaca_template, [messages, [messages[0]]], max_new_tokens=16)
    assert two[0].text == chat.text


def test_a_vanishing_temperature_is_greedy_not_an_overflow(model, tiny_tokenizer, koalpaca_template):
    # the server fuzz found it: temperature 2.2e-311 divided the logits into inf and sampling crashed
    greedy = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS[:2], max_new_tokens=12)
    tiny_t = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS[:2], max_new_tokens=12, temperature=2.2e-311)
    assert [a.text for a in tiny_t] == [a.text for a in greedy]


def test_no_new_tokens_asked_gives_an_empty_answer(model, tiny_tokenizer, koalpaca_template):
    answers = gen(model, tiny_tokenizer, koalpaca_template, QUESTIONS[:2], max_new_tokens=0)
    assert [(a.text, a.new_tokens, a.finish_reason) for a in answers] == [("", 0, "length")] * 2


def test_the_compiled_decode_step_gives_the_same_tokens_on_a_padded_batch(tiny_tokenizer, koalpaca_template,
                                                                          monkeypatch):
    # on a GPU fast=True decodes through transformers' compiled forward; here the same compiled call (inductor
    # on the CPU, no CUDA graphs) must pick what the eager loop picks, rows of different lengths included
    import kochat.generation

    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval()
    questions = QUESTIONS + ["김치는 어떻게 만드나요? 자세히 알려 주세요."]
    eager = gen(model, tiny_tokenizer, koalpaca_template, questions, max_new_tokens=40, min_new_tokens=40)
    monkeypatch.setattr(kochat.generation, "compiled_forward", lambda core: core.get_compiled_call(None))
    fast = gen(model, tiny_tokenizer, koalpaca_template, questions, max_new_tokens=40, min_new_tokens=40, fast=True)
    assert hasattr(model, "_compiled_call")  # the compiled path really ran
    assert [a.text for a in fast] == [a.text for a in eager] and [a.new_tokens for a in fast] == [40] * 4


def test_fast_mode_auto_is_on_only_where_it_pays_and_the_mode_line_says_how_answers_are_made(model, tiny_tokenizer):
    from kochat.generation import fast_mode, mode_line

    assert fast_mode(True, model) is True and fast_mode(False, model) is False
    assert fast_mode(None, model) is False  # auto: bitsandbytes 4-bit layers (and no GPU here)
    assert mode_line(model, False) == "answering with 4-bit NF4 weights (bitsandbytes) on cpu, fast mode off"
    plain = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False, device_map="cpu")
    assert fast_mode(None, plain) is torch.cuda.is_available()  # a 16-bit model: on where there is a GPU
    assert mode_line(plain, True) == "answering with float32 weights on cpu, fast mode on"


def test_the_decoding_step_compiles_with_programmatic_launch_only_where_the_gpu_has_it(monkeypatch):
    """generation.launch_options: inductor's triton.enable_pdl on an NVIDIA GPU of compute capability 9.0 or newer
    (Hopper), an option this PyTorch's compile takes; nothing on the CPU, on Ampere or on ROCm. A model's own
    compile_config is kept as it is."""
    from transformers import CompileConfig

    from kochat import generation
    assert generation.launch_options(torch.device("cpu")) == {}
    gpu = torch.device("cuda", 0)
    for capability, expected in (((9, 0), {"triton.enable_pdl": True}), ((10, 0), {"triton.enable_pdl": True}),
                                 ((8, 6), {})):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert generation.launch_options(gpu) == expected
    monkeypatch.setenv("TORCHINDUCTOR_ENABLE_PDL", "0")  # PyTorch's own switch, set off: kept off
    assert generation.launch_options(gpu) == {}
    monkeypatch.delenv("TORCHINDUCTOR_ENABLE_PDL")
    monkeypatch.setattr(torch.version, "hip", "6.4")
    assert generation.launch_options(gpu) == {}
    with torch._inductor.config.patch({"triton.enable_pdl": True}):  # a key torch.compile's options take
        assert torch._inductor.config.triton.enable_pdl
    model = modeling.load_model(tiny.MODEL_ID, modeling.load_tokenizer(tiny.MODEL_ID), four_bit=False)
    config = generation.step_compile_config(model)  # reduce-overhead's CUDA graphs (ROCm here: nothing else)
    assert config.mode is None and config.options == {"triton.cudagraphs": True}
    model.generation_config.compile_config = own = CompileConfig(mode="max-autotune")
    assert generation.step_compile_config(model) is own
