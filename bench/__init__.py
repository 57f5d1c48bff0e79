"""Benchmarks and load tests, run as modules of the project from its root, with the scripts' own
--name=value options (kochat.cli): `python3 -m bench.speed --help`. Results and how they were made:
bench/RESULTS.md (GPU speed and memory) and bench/RELIABILITY.md (fuzz, abuse, soak, resume)."""

import kochat  # noqa: E402,F401  first, as in the entry scripts: it quiets libraries' misleading import-time warnings
