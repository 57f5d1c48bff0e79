"""1,200 malformed data files, generated from the project's own sample by seeded mutations: each loads
with a consistent skip report (and its kept rows tokenize) or stops with one clear line; never a
traceback or a hang. The seed is fixed so a failure reproduces; FUZZ_SEED=<n> tries another corpus."""
import csv
import io
import json
import os
import random
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kochat import conversations, data, tiny
from kochat.errors import UserError
from kochat.prompts import load_template

FILES = 1200
SEED = int(os.environ.get("FUZZ_SEED", "20261128"))
ODD_VALUES = [None, 0, -1, 3.5, float("nan"), True, [], ["a"], {}, {"k": "v"}, "", " ", "\x00", "\ufeff",
              "\ud800", "### 답변:", "### 질문:", "<|endoftext|>", "\r\n", "가" * 30_000, "a\x00b", "\u202e역방향"]
ODD_BYTES = [b"\x00", b"\xff", b"\xfe\xff", b"\xef\xbb\xbf", b"\xc3", b"\xed\xa0\x80", b"\r", b"\n\n", b'"', b",",
             b"\t", b"{", b"]", b"\\", b"\x1a"]


def sample_rows():
    lines = tiny.DATA_FILE.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:40]]


def mutate_rows(rows, rng):
    rows = [dict(r) for r in rng.sample(rows, rng.randint(0, 12))]
    for _ in range(rng.randint(1, 6)):
        if not rows:
            break
        row = rng.choice(rows)
        if not isinstance(row, dict):
            continue
        action = rng.randrange(7)
        key = rng.choice(list(row) or ["instruction"])
        if action == 0:
            row[key] = rng.choice(ODD_VALUES)
        elif action == 1:
            row.pop(key, None)
        elif action == 2:
            row[rng.choice(["Instruction", "질문", "", " output", "text", "input"])] = rng.choice(ODD_VALUES + ["x"])
        elif action == 3:  # a rendered row among unrendered ones, with or without its marker
            row.clear()
            row["text"] = rng.choice(["### 질문: 무엇?\n\n### 답변: 이것.", "### 질문: 무엇?", "답변만", "### 답변:"])
        elif action == 4:  # a huge field (up to ~400k characters)
            row[key] = (str(row.get(key, "")) * rng.randint(50, 800))[:400_000]
        elif action == 5:
            rows.append(rng.choice(ODD_VALUES))  # not an object at all
        else:
            row[key] = str(row.get(key, ""))[: rng.randint(0, 5)]
    return rows


def encode(rows, kind, rng) -> bytes:
    if kind == "jsonl":
        return "\n".join(json.dumps(r, ensure_ascii=rng.random() < 0.5) for r in rows).encode("utf-8", "surrogatepass")
    if kind == "json":
        value = rows if rng.random() < 0.8 else rng.choice([{"data": rows}, {"a": rows, "b": rows}, rows[:1], 7, "x"])
        return json.dumps(value, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    if kind in ("csv", "tsv"):
        out = io.StringIO()
        header = sorted({str(k) for r in rows if isinstance(r, dict) for k in r}) or ["instruction"]
        if rng.random() < 0.15:
            header.append(header[0])  # a duplicate column
        writer = csv.writer(out, delimiter="\t" if kind == "tsv" else ",")
        writer.writerow(header)
        for r in rows:
            writer.writerow([r.get(h, "") if isinstance(r, dict) else r for h in header])
        return out.getvalue().encode("utf-8", "surrogatepass")
    table_rows = [r for r in rows if isinstance(r, dict)]
    try:
        # pyarrow itself crashes on some odd strings (lone surrogates): store them as they would arrive, replaced
        clean = lambda v: (v if isinstance(v, str) else json.dumps(v)).encode("utf-8", "replace").decode("utf-8")
        table = pa.Table.from_pylist([{clean(k): clean(v) for k, v in r.items()} for r in table_rows])
    except (pa.ArrowException, TypeError, UnicodeEncodeError):
        table = pa.table({"instruction": ["q"], "output": [None]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def mutate_bytes(raw: bytes, rng) -> bytes:
    for _ in range(rng.choice([0, 0, 1, 2, 4])):
        action = rng.randrange(5)
        at = rng.randint(0, len(raw))
        if action == 0:
            raw = raw[:at]  # cut off, as by a full disk
        elif action == 1:
            raw = raw[:at] + rng.choice(ODD_BYTES) + raw[at:]
        elif action == 2:
            raw = rng.choice([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"]) + raw
        elif action == 3:
            try:
                raw = raw.decode("utf-8").encode(rng.choice(["cp949", "utf-16", "euc-kr", "latin-1"]), "replace")
            except UnicodeDecodeError:
                pass
        else:
            raw = raw.replace(b"\n", rng.choice([b"\r\n", b"\r", b"\n\n"]))
    return raw


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng, base = random.Random(SEED), sample_rows()
    folder = tmp_path_factory.mktemp("fuzz")
    files = []
    for i in range(FILES):
        kind = rng.choice(["jsonl", "jsonl", "json", "csv", "tsv", "parquet"])
        raw = encode(mutate_rows(base, rng), kind, rng)
        if kind != "parquet" or rng.random() < 0.3:
            raw = mutate_bytes(raw, rng)
        path = folder / f"{i:04d}.{kind}"
        path.write_bytes(raw)
        files.append(path)
    return files


def test_every_malformed_file_loads_with_a_true_report_or_stops_with_one_line(corpus, tiny_tokenizer):
    template, outcomes, slowest = load_template("koalpaca", tiny_tokenizer), {"loaded": 0, "stopped": 0}, 0.0
    for path in corpus:
        start = time.perf_counter()
        try:
            rows, report = data.load_rows(str(path), data.Columns(), template, 20_000)
        except UserError as e:
            message = str(e)
            assert message and "\n" not in message and "Traceback" not in message, (path.name, message)
            outcomes["stopped"] += 1
        else:
            assert report.kept == len(rows) > 0 and report.read == report.kept + report.skipped, path.name
            for row in rows:
                (pieces,), _ = conversations.examples(template, row)
                prompt, answer = "".join(t for t, trained in pieces if not trained), "".join(t for t, trained in pieces if trained)
                assert prompt.strip() and answer.removesuffix(template.end_of_turn).strip(), (path.name, row)
                assert "\x00" not in prompt + answer
                assert len(row["instruction"] + row["input"] + row["output"] + row["text"]) <= 20_000
                tiny_tokenizer(prompt + answer)  # what step 3 does next must not fail
            outcomes["loaded"] += 1
        slowest = max(slowest, time.perf_counter() - start)
    print(f"fuzz seed {SEED}: {FILES} files, {outcomes}, slowest {slowest:.2f} s")
    assert slowest < 10, "a file took over 10 s: a hang in the making"
    assert outcomes["loaded"] > 100 and outcomes["stopped"] > 100  # the corpus reaches both outcomes
