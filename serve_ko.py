"""Serve your fine-tuned model inside your network: an OpenAI-compatible API and a Korean web chat page.
    python3 serve_ko.py --adapter outputs/tiny --port 8000
    python3 serve_ko.py --adapter outputs/run --host 0.0.0.0 --api-key "$KEY"      # beyond this machine: a key
    python3 serve_ko.py --adapter outputs/run --index hr=outputs/index-hr --index it=outputs/index-it
Endpoints: POST /v1/chat/completions, POST /v1/completions (stream: true for server-sent events),
GET /v1/models, GET /v1/indexes, GET /health, and the chat page at /. Private by default: it listens on
127.0.0.1 only, refuses other addresses without an API key, and never logs prompts or answers unless asked
to. With --index, chat answers come from those documents and carry their `sources`; a line `KEY hr,it` in
the key file limits that key to those indexes.
"""
import errno
import math
import os
import socket
import sys
from pathlib import Path

import kochat  # noqa: F401  first: it quiets a misleading bitsandbytes CPU warning before bitsandbytes loads
from kochat import cli
from kochat.documents import grounding
from kochat.errors import UserError

# ---- constants: edit here, or override on the command line as --name=value -------------------
ADAPTER = "outputs/polyglot-ko-12.8b-koalpaca"  # a run folder from finetune_ko.py, or a merged model folder
BASE = ""                                    # the run's base where it is here (folder or hub id); "" = its MODEL_ID
HOST = "127.0.0.1"                           # address to listen on; anything beyond loopback needs an API key
PORT = 8000                                  # TCP port
API_KEY = []                                 # accepted keys; repeat --api-key; also $API_KEYS (a,b) and API_KEY_FILE
API_KEY_FILE = ""                            # one accepted key a line; "KEY hr,it" limits it to those indexes; # comments
MODEL_NAME = ""                              # the model id clients send; "" = the run folder's name
FOUR_BIT = "auto"                            # auto: a run's base in 4-bit NF4, as trained, a merged export in
                                             # 16 bits where it fits the GPU (else 4-bit); true; false (16-bit)
FAST = "auto"                                # gen()'s fast mode (cache up front, compiled on a GPU): auto = on for
                                             # a 16-bit or int8/int4 (export_ko.py) model on a GPU; true; false
MAX_BATCH = 16                               # requests answered together in one batch (fast mode runs a batch
                                             # padded to a power of two: 16, not 20)
BATCH_KERNEL = "auto"                        # an int4/int8 export's weights moved onto a kernel faster for batches
                                             # where one is installed. auto: int4 and int8 onto humming's
                                             # (humming-kernels, Ampere GPUs and newer; faster for one row and for
                                             # batches) and, where a second copy fits beside it with a full
                                             # batch's cache, one request's steps onto the dp4a kernel (faster
                                             # still: kochat/dp4a_kernel.py, cuda-bindings); where humming is not
                                             # installed, int4 on Hopper GPUs onto mslk's as both, int8 onto
                                             # gemlite's; silent where nothing applies. humming: onto humming's
                                             # only, saying so where it is not installed. both (mslk-cuda): int4
                                             # keeps tinygemm for one row, mslk's beside it for batches (the int4
                                             # weights twice), exact where that and a full batch's cache do not
                                             # fit; exact: mslk only, the same int4 levels; fp8: faster batches,
                                             # less exact (int8 moves alike with each); false: the export's
                                             # kernels (tinygemm, torchao's int8)
WARMUP = True                                # where fast mode compiles (a GPU), compile it for each batch size
                                             # before serving, for a short question and max_tokens (a minute
                                             # each at 12.8b); longer prompts compile when they first come
MAX_CONCURRENT = 64                          # requests in progress (waiting or answering); more get 429
MAX_TOKENS = 256                             # answer length when a request sets no max_tokens
TEMPERATURE = 0.7                            # when a request sets no temperature
TOP_P = 0.9                                  # when a request sets no top_p
SYSTEM = ""                                  # a system message for conversations that send none (the assistant's
                                             # role, tone, the company's name); "" = none
MAX_BODY_BYTES = 1_000_000                   # larger request bodies get 413 before they are read
BODY_TIMEOUT_S = 30.0                       # a request body must arrive within this many seconds (slow clients get 408)
HEADER_TIMEOUT_S = 10.0                     # a request's headers must arrive within this many seconds, else the connection closes
LOG_PROMPTS = False                          # True: write prompts and answers to the log (off: they stay private)
INDEX = []                                   # document indexes to answer from: name=folder (or a folder); repeatable
TOP_K = 3                                    # passages given to the model with each question
MIN_RELEVANCE = 0.3                          # below this (0..1) the documents do not cover the question
NOT_COVERED = grounding.NOT_COVERED          # the answer then, instead of one the model would invent
RERANKER = ""                                # a cross-encoder model folder that re-scores retrieved passages

PRESETS = {}
FLAGS = {}
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_options() -> None:
    """Values a library would stop at with a traceback, or take and misbehave with: one line each."""
    cli.check_ranges(
        (1 <= PORT <= 65535, f"--port must be from 1 to 65535, not {PORT}"),
        (str(BATCH_KERNEL).lower() in ("auto", "both", "exact", "fp8", "false", "humming"),
         f"--batch_kernel is auto, both, exact, fp8, false or humming, not {BATCH_KERNEL!r}"),
        *((value >= 1, f"--{name} must be at least 1, not {value}") for name, value in [
            ("max_batch", MAX_BATCH), ("max_concurrent", MAX_CONCURRENT), ("max_tokens", MAX_TOKENS),
            ("max_body_bytes", MAX_BODY_BYTES)]),
        (0 <= TEMPERATURE <= 2, f"--temperature must be from 0 (greedy) to 2, not {TEMPERATURE:g}"),
        (0 < TOP_P <= 1, f"--top_p must be above 0 and at most 1, not {TOP_P:g}"),
        *((0 < value < math.inf, f"--{name} must be a number of seconds above 0, not {value:g}") for name, value in [
            ("body_timeout_s", BODY_TIMEOUT_S), ("header_timeout_s", HEADER_TIMEOUT_S)]),
        (TOP_K >= 1, f"--top_k must be at least 1, not {TOP_K}"),
        (0 <= MIN_RELEVANCE <= 1, f"--min_relevance must be from 0 to 1, not {MIN_RELEVANCE:g}"))


def index_folders() -> dict[str, str]:
    """--index values as name -> folder: "hr=outputs/index-hr", or a bare folder named after itself."""
    folders = {}
    for item in INDEX:
        name, eq, folder = item.partition("=")
        name, folder = (name.strip(), folder.strip()) if eq else (Path(item).name, item)
        if not name or not folder or not all(c.isalnum() or c in "-_." for c in name):
            raise UserError(f"--index={item!r}: give name=folder, the name in letters, digits, '-', '_' or '.'")
        if name in folders:
            raise UserError(f"--index names {name!r} twice; give each index its own name (name=folder)")
        folders[name] = folder
    return folders


def read_keys(indexes: dict[str, str]) -> dict[str, frozenset | None]:
    """Accepted keys -> the index names each may use (None: every index). Keys from --api-key and API_KEYS
    may use every index; a key file line "KEY hr,it" limits its key to hr and it."""
    keys: dict[str, frozenset | None] = {k.strip(): None for k in [*API_KEY, *os.environ.get("API_KEYS", "").split(",")]
                                         if k.strip()}
    if API_KEY_FILE:
        try:
            # utf-8-sig: Notepad starts a UTF-8 file with a byte-order mark, which is no part of the first key
            lines = Path(API_KEY_FILE).expanduser().read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read the API key file {API_KEY_FILE}: {e}") from None
        for number, line in enumerate(lines, start=1):
            key, _, names = line.strip().partition(" ")
            if not key or key.startswith("#"):  # blank lines and comments: a commented-out key is no key
                continue
            scope = frozenset(n.strip() for n in names.split(",") if n.strip()) if names.strip() else None
            unknown = sorted((scope or set()) - set(indexes))
            if unknown:
                raise UserError(f"{API_KEY_FILE} line {number} names an index this server does not serve: "
                                f"{', '.join(unknown)} (serving: {', '.join(indexes) or 'none; add --index'})")
            if not (key.isascii() and key.isprintable()):
                raise UserError(f"{API_KEY_FILE} line {number}: the key has a character that is not printable "
                                f"ASCII; an HTTP header cannot carry it")
            keys[key] = scope
    if not all(k.isascii() and k.isprintable() for k in keys):  # else no client could ever send it
        raise UserError("an API key given with --api-key or API_KEYS has a character that is not printable ASCII; "
                        "an HTTP header cannot carry it")
    if HOST not in LOOPBACK and not keys:
        raise UserError(f"refusing to listen on {HOST} without an API key: pass --api-key=<key> (or set "
                        f"API_KEYS or --api_key_file), or keep the default --host=127.0.0.1")
    return keys


def check_can_listen() -> None:
    """A host that is not an address of this machine, or a port in use or not allowed, is one line."""
    try:
        family = socket.getaddrinfo(HOST, PORT, type=socket.SOCK_STREAM)[0][0]
    except (OSError, UnicodeError):
        raise UserError(f"--host={HOST!r} is not an address or a known host name: use 127.0.0.1 (this machine "
                        f"only) or 0.0.0.0 (all its addresses, with an API key)") from None
    try:
        socket.create_server((HOST, PORT), family=family).close()
    except OSError as e:
        option = "--port" if e.errno in (errno.EADDRINUSE, errno.EACCES) else "--host"
        raise UserError(f"cannot listen on {HOST}:{PORT}: {e.strerror}; choose another {option}") from None


def main(argv):
    given = cli.apply_command_line(globals(), argv, PRESETS, FLAGS, Path(__file__), __doc__)
    check_options()
    fast_choice = cli.auto_or_bool("FAST", FAST)
    four_bit_choice = cli.auto_or_bool("FOUR_BIT", FOUR_BIT)
    indexes = index_folders()
    keys = read_keys(indexes)
    check_can_listen()
    import torch  # the heavy imports once the options are good: a wrong option is one line in a second
    import uvicorn

    from kochat import answering, batch_kernels, humming_kernel, runs
    from kochat.documents import store
    from kochat.documents.retrieval import Searcher
    from kochat.generation import compiles, fast_mode, mode_line, render
    from kochat.server import Engine, Library, create_app, slow_header_protocol

    run = runs.open_run(ADAPTER, BASE)
    opened = {name: store.open_index(folder) for name, folder in indexes.items()}
    for line in filter(None, map(store.out_of_date, opened.values())):
        print(line, file=sys.stderr)
    library = Library({name: Searcher(index, reranker=RERANKER, name=name) for name, index in opened.items()},
                      top_k=TOP_K, min_relevance=MIN_RELEVANCE, not_covered=NOT_COVERED) if indexes else None
    batch_kernel = str(BATCH_KERNEL).lower()
    serving = (MAX_BATCH, MAX_TOKENS + 256)  # a full batch of answers after a question (passages make it longer)
    kernels = {"auto": "both", "humming": "batches"}.get(batch_kernel, "export")
    _, tokenizer, model = answering.load_for_answering(run, four_bit=four_bit_choice, kernels=kernels, serving=serving)
    torch.manual_seed(0)
    fast = fast_mode(fast_choice, model)  # auto: on where it pays (a 16-bit or int8/int4 export on a GPU)
    print(mode_line(model, fast), file=sys.stderr)
    moved = (batch_kernels.onto_batch_kernel(model, "both" if batch_kernel == "auto" else batch_kernel, serving)
             if fast and batch_kernel not in ("false", "humming") else None)
    if moved:
        print(moved, file=sys.stderr)
    elif batch_kernel == "humming" and not humming_kernel.on_humming(model) and not humming_kernel.installed():
        print(f"--batch_kernel=humming moves an int4 or int8 export onto humming's kernel on an NVIDIA GPU with "
              f"{humming_kernel.PACKAGES} installed: nothing moved here", file=sys.stderr)
    elif batch_kernel in ("both", "exact", "fp8"):  # asked for: say why nothing moved
        print(f"--batch_kernel={batch_kernel} moves an int4 export in fast mode on a Hopper GPU with mslk-cuda "
              "installed, or an int8 export with gemlite: nothing here to move", file=sys.stderr)
    max_batch = MAX_BATCH
    slow = batch_kernels.slow_for_batches(model) if fast and MAX_BATCH > 1 else ""
    if slow:  # the default gives way; a --max_batch asked for is kept
        max_batch = MAX_BATCH if "MAX_BATCH" in given.get("constants", ()) else 1
        print(f"{slow}: answering {'one request' if max_batch == 1 else f'up to {max_batch} requests'} at a time "
              f"(--max_batch sets it)", file=sys.stderr)
    engine = Engine(model, tokenizer, run.template, MODEL_NAME or run.folder.resolve().name, max_batch=max_batch,
                    max_concurrent=MAX_CONCURRENT, fast=fast, log_prompts=LOG_PROMPTS)
    if WARMUP and fast and compiles(model):
        print(f"compiling the decoding step for batches of up to {max_batch} before serving "
              "(about a minute each for a large model; --warmup=false skips this)", file=sys.stderr)
        engine.warm_up(render(run.template, "안녕하세요")[0], MAX_TOKENS)
    app = create_app(engine, keys, max_body_bytes=MAX_BODY_BYTES, body_timeout_s=BODY_TIMEOUT_S,
                     default_max_tokens=MAX_TOKENS, default_temperature=TEMPERATURE, default_top_p=TOP_P,
                     default_system=SYSTEM, library=library)
    documents = f", answering from {', '.join(indexes)}" if indexes else ""
    system = ", a system message for conversations without one" if SYSTEM else ""
    print(f"serving {engine.model_name} on http://{HOST}:{PORT}/ ({'API key required' if keys else 'no API key'}"
          f"{documents}{system})", flush=True)
    uvicorn.run(app, host=HOST, port=PORT, log_level="info", timeout_keep_alive=5,
                http=slow_header_protocol(HEADER_TIMEOUT_S))


if __name__ == "__main__":
    sys.exit(cli.run(main))
