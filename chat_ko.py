"""Talk to your fine-tuned model in the terminal, offline: a run folder from finetune_ko.py (base + LoRA
adapter) or a merged model folder. The template is read from the folder, so questions are asked exactly
as the model was trained.
    python chat_ko.py --adapter outputs/tiny                          # a conversation, answers streamed
    python chat_ko.py --adapter outputs/tiny --question "한국의 수도는?"   # one answer, then exit
    python chat_ko.py --adapter outputs/tiny --questions qs.txt         # each line answered into JSONL
In a conversation: /reset forgets earlier turns, /exit (or Ctrl-D) leaves.
"""
import json
import sys
from pathlib import Path

import kochat  # noqa: F401  first: it quiets a misleading bitsandbytes CPU warning before bitsandbytes loads
import torch

from kochat import cli, modeling, runs
from kochat.generation import gen
from kochat.prompts import load_questions

# ---- constants: edit here, or override on the command line as --name=value -------------------
ADAPTER = "outputs/polyglot-ko-12.8b-koalpaca"  # a run folder from finetune_ko.py, or a merged model folder
QUESTION = ""                                # answer this one question and exit
QUESTIONS = ""                               # a file of questions (one a line; tab, then input) to answer
OUTPUT = ""                                  # JSONL for QUESTIONS; "" = <questions file>.answers.jsonl
FOUR_BIT = True                              # the base in 4-bit NF4, as trained; False = 16-bit (more memory)
FAST = False                                 # gen()'s fast mode: static cache, compiled on a GPU (16-bit models)
MAX_NEW_TOKENS = 256                         # longest answer, in tokens
TEMPERATURE = 0.7                            # sampling temperature; 0 = greedy (same answer every time)
TOP_P = 0.9                                  # nucleus sampling
MAX_TURNS = 8                                # earlier question/answer pairs kept in a conversation
SEED = 0                                     # sampling seed, for answers you can reproduce

PRESETS = {}
FLAGS = {}


def main(argv):
    cli.apply_command_line(globals(), argv, PRESETS, FLAGS, Path(__file__), __doc__)
    run = runs.open_run(ADAPTER)
    questions = load_questions(QUESTIONS) if QUESTIONS else []
    tokenizer = modeling.load_tokenizer(run.tokenizer_dir)
    modeling.check_machine_can_run(modeling.load_config(run.base_model))
    model = modeling.load_model(run.base_model, tokenizer, four_bit=FOUR_BIT, adapter=run.adapter).eval()
    torch.manual_seed(SEED)
    settings = dict(max_new_tokens=MAX_NEW_TOKENS, temperature=TEMPERATURE, top_p=TOP_P, fast=FAST)

    if QUESTION:
        gen(model, tokenizer, run.template, QUESTION, stream=lambda _, text: print(text, end="", flush=True), **settings)
        print()
        return
    if questions:
        output = Path(OUTPUT or Path(QUESTIONS).with_suffix(".answers.jsonl"))
        with open(output, "w", encoding="utf-8") as out:
            for question in questions:
                answer = gen(model, tokenizer, run.template, question, **settings)[0]
                out.write(json.dumps(answer.to_dict(), ensure_ascii=False) + "\n")
                print(f"Q: {answer.question}\nA: {answer.text}\n   ({answer.new_tokens} tokens, "
                      f"{answer.tokens_per_s:.1f} tokens/s)")
        print(f"{len(questions)} answers in {output}")
        return
    converse(model, tokenizer, run, settings)


def converse(model, tokenizer, run, settings):
    """A conversation: earlier turns go into each prompt, rendered with the run's own template."""
    print(f"{run.folder} ({run.template.name} template). /reset forgets, /exit leaves.")
    history: list[dict] = []
    while True:
        try:
            question = input("\n질문> ").strip()
        except EOFError:
            print()
            return
        if question in ("/exit", "/quit"):
            return
        if question == "/reset":
            history = []
            print("(conversation cleared)")
            continue
        if not question:
            continue
        messages = history[-2 * MAX_TURNS:] + [{"role": "user", "content": question}]
        print("답변> ", end="", flush=True)
        answer = gen(model, tokenizer, run.template, messages,
                     stream=lambda _, text: print(text, end="", flush=True), **settings)[0]
        print(f"\n   ({answer.new_tokens} tokens, {answer.tokens_per_s:.1f} tokens/s"
              f"{', cut at MAX_NEW_TOKENS' if answer.finish_reason == 'length' else ''})")
        history = messages + [{"role": "assistant", "content": answer.text}]


if __name__ == "__main__":
    sys.exit(cli.run(main))
