"""Evaluation of a run folder (eval_ko.py, and finetune_ko.py's EVAL_TASKS): is the adapter better than its
base, and did it keep the base's Korean?

- `suites`: the benchmarks read from local files (KoBEST's TSVs, KMMLU's and HAE-RAE's CSVs), checked
  before any model loads, turned into lm-evaluation-harness task configs: lm-eval's own task definitions
  and metrics, fed from those files instead of the hub;
- `harness`: the loaded model handed to lm-eval (HFLM), base (adapter disabled) and adapter scored on one
  load, with lm-eval's sqlite cache so an interrupted evaluation resumes;
- `scores`: the scores' JSON and the Markdown table base vs adapter;
- `questions`: question files (.txt, .jsonl, the KULLM / Self-Instruct user-oriented form);
- `answers`: the generative report: base and adapter answer every question with gen(), judge-free figures
  per model, resumed from a JSONL cache; `judge` scores answers 1-10 through an OpenAI-compatible endpoint,
  its verdicts cached the same way;
- `pages`: the side-by-side HTML page and Markdown summary of the generative report.
"""
