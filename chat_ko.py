"""Talk to your fine-tuned model in the terminal, offline: a run folder from finetune_ko.py (base + LoRA
adapter) or a merged model folder. The template is read from the folder, so questions are asked exactly
as the model was trained.
    python3 chat_ko.py --adapter outputs/tiny                          # a conversation, answers streamed
    python3 chat_ko.py --adapter outputs/tiny --question "한국의 수도는?"   # one answer, then exit
    python3 chat_ko.py --adapter outputs/tiny --questions qs.txt         # each line answered into JSONL
    python3 chat_ko.py --adapter outputs/tiny --index outputs/index      # answers from your documents, cited
    python3 chat_ko.py --adapter outputs/tiny --system "한빛소프트 인사팀의 안내 도우미입니다."  # before every conversation
In a conversation: /reset forgets earlier turns, /exit (or Ctrl-D) leaves. With --index, each question
(with the conversation before it) retrieves passages that go into the prompt, numbered; the answer cites
them as [1], [2] and the sources are printed under it.
"""
import json
import sys
from pathlib import Path

import kochat  # noqa: F401  first: it quiets a misleading bitsandbytes CPU warning before bitsandbytes loads
import torch

from kochat import answering, cli, modeling, prompts, runs
from kochat.documents import grounding
from kochat.errors import UserError
from kochat.generation import compiles, fast_mode, gen, mode_line, render
from kochat.tokenization import encode_prompt

# ---- constants: edit here, or override on the command line as --name=value -------------------
ADAPTER = "outputs/polyglot-ko-12.8b-koalpaca"  # a run folder from finetune_ko.py, or a merged model folder
BASE = ""                                    # the run's base where it is here (folder or hub id); "" = its MODEL_ID
QUESTION = ""                                # answer this one question and exit
QUESTIONS = ""                               # a file of questions: one a line (a tab, then input; # comments)
OUTPUT = ""                                  # JSONL for QUESTIONS; "" = <questions file>.answers.jsonl
FOUR_BIT = "auto"                            # auto: a run's base in 4-bit NF4, as trained, a merged export in
                                             # 16 bits where it fits the GPU (else 4-bit); true; false (16-bit)
FAST = "auto"                                # gen()'s fast mode (cache up front, compiled on a GPU): auto = on for
                                             # a 16-bit or int8/int4 (export_ko.py) model on a GPU; true; false
MAX_NEW_TOKENS = 256                         # longest answer, in tokens
TEMPERATURE = 0.7                            # sampling temperature; 0 = greedy (same answer every time)
TOP_P = 0.9                                  # nucleus sampling
MAX_TURNS = 8                                # earlier question/answer pairs kept in a conversation
SYSTEM = ""                                  # a system message before every conversation (the assistant's role,
                                             # tone, the company's name); "" = none
SEED = 0                                     # sampling seed, for answers you can reproduce
INDEX = ""                                   # an index folder from index_ko.py: answer from those documents
TOP_K = 3                                    # passages given to the model with each question
MIN_RELEVANCE = 0.3                          # below this (0..1) the documents do not cover the question
NOT_COVERED = grounding.NOT_COVERED          # the answer then, instead of one the model would invent
RERANKER = ""                                # a cross-encoder model folder that re-scores retrieved passages

PRESETS = {}
FLAGS = {}


def main(argv):
    given = cli.apply_command_line(globals(), argv, PRESETS, FLAGS, Path(__file__), __doc__)
    check_settings(given["constants"])
    fast_choice = cli.auto_or_bool("FAST", FAST)  # checked before anything loads
    four_bit_choice = cli.auto_or_bool("FOUR_BIT", FOUR_BIT)
    run = runs.open_run(ADAPTER, BASE)
    questions, output = [], None
    if QUESTIONS:
        questions = prompts.load_questions(QUESTIONS)
        if not questions:
            raise UserError(f"--questions={QUESTIONS} holds no questions (one a line; # starts a comment)")
        found = prompts.questions_path(QUESTIONS)  # answers beside it, wherever it was found
        output = Path(OUTPUT) if OUTPUT else found.with_suffix(".answers.jsonl")
        runs.check_file_can_be_written(output, "OUTPUT", reads=found)  # now, not after the model has answered
    searcher = open_searcher()
    # one answer at a time: one row onto the fastest kernel installed
    _, tokenizer, model = answering.load_for_answering(run, four_bit=four_bit_choice, kernels="one_row")
    torch.manual_seed(SEED)
    fast = fast_mode(fast_choice, model)  # auto: on where it pays (a 16-bit or int8/int4 export on a GPU)
    print(mode_line(model, fast), file=sys.stderr)
    if fast and compiles(model):  # said before the wait: nothing else shows while the first answer compiles
        print("the first answer compiles the decoding step (about a minute at 12.8b, two on a new machine), as does "
              "the first of each new cache length (prompt plus answer, rounded up); the others do not wait",
              file=sys.stderr)
    settings = dict(max_new_tokens=MAX_NEW_TOKENS, temperature=TEMPERATURE, top_p=TOP_P, fast=fast)
    room = modeling.context_length(model.config) - MAX_NEW_TOKENS  # the prompt's tokens at most

    def conversation(messages: list[dict], extra: str = "") -> list[dict]:
        """What gen() answers: SYSTEM first, and a question's own input (a questions file's tab) in the
        template's input slot."""
        if extra:
            messages = [*messages[:-1], {**messages[-1], "context": extra}]
        return ([{"role": "system", "content": SYSTEM}] if SYSTEM else []) + messages

    def fitted(messages: list[dict], extra: str = "") -> list[dict] | None:
        """The conversation with its oldest turns left out until its prompt fits the model's context beside the
        answer (MAX_TURNS keeps at most that many); None where the question alone does not fit."""
        while len(encode_prompt(tokenizer, render(run.template, conversation(messages, extra))[0])) > room:
            if len(messages) == 1:
                return None
            messages = messages[2:]  # the oldest question and its answer
        return messages

    def answer(messages, stream=None, extra=""):
        """gen() on the conversation, grounded in the index when there is one: (Answer, or None where there is
        nothing to answer; the sources given to the model; what was said instead of an answer)."""
        def say(text):
            if stream:
                stream(0, text)
            return None, [], text
        if searcher is None:
            messages = fitted(messages, extra)
            if messages is None:
                return say(f"(질문이 너무 깁니다: 이 모델은 답 {MAX_NEW_TOKENS} 토큰과 함께 {room + MAX_NEW_TOKENS} "
                           f"토큰까지 받습니다. 질문을 줄여 주세요)")
            return gen(model, tokenizer, run.template, conversation(messages, extra), stream=stream,
                       **settings)[0], [], ""
        if extra:  # a question's own input goes with it; the passages take the template's input slot
            messages = [*messages[:-1], {"role": "user", "content": messages[-1]["content"] + "\n\n" + extra}]
        grounded, found = grounding.ground(searcher, conversation(messages), top_k=TOP_K,
                                           min_relevance=MIN_RELEVANCE, tokenizer=tokenizer, template=run.template,
                                           max_prompt_tokens=room)
        if not found.covered:
            if not found.too_long:
                return say(NOT_COVERED)
            return say("(대화가 길어 문서를 넣을 자리가 없습니다: /reset 으로 새 대화를 시작하세요)" if len(messages) > 1
                       else "(질문이 길어 문서를 넣을 자리가 없습니다: 질문을 줄여 주세요)")
        return gen(model, tokenizer, run.template, grounded, stream=stream, **settings)[0], found.hits, ""

    if QUESTION:
        _, hits, _ = answer([{"role": "user", "content": QUESTION}],
                            stream=lambda _, text: print(text, end="", flush=True))
        print()
        print_sources(hits)
        return
    if questions:
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w", encoding="utf-8") as out:
            for question, extra in questions:
                result, hits, said = answer([{"role": "user", "content": question}], extra=extra)
                record = {**result.to_dict(), "input": extra} if result else {
                    "question": question, "input": extra, "text": said, "new_tokens": 0,
                    "finish_reason": "not_covered" if said == NOT_COVERED else "too_long"}
                if searcher is not None:
                    record["sources"] = [h.to_dict() for h in hits]
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                print(f"Q: {question}\nA: {record['text']}" + (f"\n   ({result.new_tokens} tokens, "
                      f"{result.tokens_per_s:.1f} tokens/s)" if result else ""))
                print_sources(hits)
        print(f"{len(questions)} answers in {output}")
        return
    converse(run, answer)


def check_settings(given_names: set[str]) -> None:
    """One line for a setting out of its range, before anything loads (the server answers 400 to the same)."""
    for name in ("QUESTION", "QUESTIONS"):  # given empty (an unset shell variable): not a conversation instead
        if name in given_names and not globals()[name].strip():
            raise UserError(f"--{name.lower()} is empty: give a question (--question=\"연차휴가는 며칠인가요?\") or "
                            f"a file of questions (--questions=qs.txt); without either, chat_ko.py asks in turn")
    cli.check_ranges((MAX_NEW_TOKENS >= 1, f"--max_new_tokens must be at least 1, not {MAX_NEW_TOKENS}"),
                     (MAX_TURNS >= 0, f"--max_turns must be 0 or more, not {MAX_TURNS}"),
                     (0 <= TEMPERATURE <= 2, f"--temperature must be from 0 (greedy) to 2, not {TEMPERATURE:g}"),
                     (0 < TOP_P <= 1, f"--top_p must be above 0 and at most 1, not {TOP_P:g}"),
                     (TOP_K >= 1, f"--top_k must be at least 1, not {TOP_K}"),
                     (0 <= MIN_RELEVANCE <= 1, f"--min_relevance must be from 0 to 1, not {MIN_RELEVANCE:g}"))


def open_searcher():
    if not INDEX:
        return None
    from kochat.documents import store
    from kochat.documents.retrieval import Searcher

    if "=" in INDEX and not Path(INDEX).expanduser().is_dir():
        raise UserError(f"--index={INDEX}: chat_ko.py answers from one index folder (--index=outputs/index-hr); "
                        f"name=folder is serve_ko.py's form")
    index = store.open_index(INDEX)
    stale = store.out_of_date(index)
    if stale:
        print(stale, file=sys.stderr)
    return Searcher(index, reranker=RERANKER)


def print_sources(hits):
    for h in hits:
        print(f"   [{h.n}] {h.where}")


def converse(run, answer):
    """A conversation: earlier turns go into each prompt, rendered with the run's own template."""
    commands = "/reset forgets earlier turns, /exit leaves"
    grounded = f", answering from {INDEX}" if INDEX else ""
    form = ("the tokenizer's chat template" if run.template.name == prompts.CHAT_TEMPLATE
            else f"{run.template.name} template")
    system = ", with a system message" if SYSTEM else ""
    print(f"{run.folder} ({form}{grounded}{system}). {commands}")
    history: list[dict] = []
    while True:
        try:
            question = input("\n질문> ").strip()
        except EOFError:
            print()
            return
        if not sys.stdin.isatty():  # piped questions are not echoed by a terminal: the transcript shows them
            print(question)
        if question in ("/exit", "/quit"):
            return
        if question == "/reset":
            history = []
            print("(conversation cleared)")
            continue
        if question.startswith("/") and " " not in question:  # /help, or a command mistyped: not a question
            print(f"({commands})")
            continue
        if not question:
            continue
        messages = history[len(history) - 2 * MAX_TURNS:] + [{"role": "user", "content": question}]
        print("답변> ", end="", flush=True)
        result, hits, said = answer(messages, stream=lambda _, text: print(text, end="", flush=True))
        if result is None:
            print()
            if said != NOT_COVERED:  # too long: the question is not kept
                continue
        else:
            print(f"\n   ({result.new_tokens} tokens, {result.tokens_per_s:.1f} tokens/s"
                  f"{', cut at MAX_NEW_TOKENS' if result.finish_reason == 'length' else ''})")
        print_sources(hits)
        history = messages + [{"role": "assistant", "content": result.text if result else said}]


if __name__ == "__main__":
    sys.exit(cli.run(main))
