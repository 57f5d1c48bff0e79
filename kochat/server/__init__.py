"""The HTTP server behind serve_ko.py: OpenAI-compatible chat and completions, a web chat page, API keys.

One concern a module, in the order a request meets them:
  uvicorn_limits  a request's headers must arrive in time (the one module using uvicorn's internals)
  guard           the API key (constant time, with the indexes it may use) and the body's size and time limits
  routes          create_app and the endpoints; a request becomes a prompt (prompt_text), then a Job (to_job)
  library         the document indexes by name, which a key may use, and grounding a chat in them
  engine          the queue and the worker thread that answers waiting Jobs in batches with gen()
  schemas         the wire: request bodies, completion bodies, stream chunks, OpenAI's error JSON

Prompts and answers are never logged unless the engine's log_prompts is set.
"""
from .engine import Engine
from .library import Library
from .routes import create_app
from .uvicorn_limits import slow_header_protocol

__all__ = ["Engine", "Library", "create_app", "slow_header_protocol"]
