"""The constants block of an entry script, overridden from the command line with the same names.

`python3 finetune_ko.py --max_steps=50 --data=./my_qa.csv` sets MAX_STEPS and DATA: one knob per
constant, the type of the default decides how a value is read, a wrong name or type is a one-line
error. Inspired by nanoGPT's configurator, without exec().
"""
from __future__ import annotations

import ast
import difflib
import math
import os
import re
import select
import shlex
import signal
import sys
from pathlib import Path

from .errors import UserError


def run(main) -> int:
    """Call main(argv) and turn a UserError into one line on stderr and exit status 2; output read only in part
    (`| head`) ends quietly, as other command-line programs do."""
    try:
        try:
            return main(sys.argv[1:]) or 0
        finally:
            sys.stdout.flush()  # here, not at exit, so that a reader gone early is caught below
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not reader_gone():  # another pipe broke (a worker process): that is an error of its own
            raise
        # Python's documented way: what is left unwritten goes nowhere, no second error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (poll reports an error on its end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll here, or no real standard output: as before
        return True


def flag(name: str, value=None) -> str:
    """How a user sets the constant NAME on the command line, for error texts: flag("OVERWRITE", "true") is
    "--overwrite=true". The one place the package turns a constant's name into its option."""
    return f"--{name.lower()}" + ("" if value is None else f"={value}")


def require(namespace: dict, *names: str) -> None:
    """Constants a script cannot run without (left "" in its constants block): one line naming those missing."""
    missing = [flag(n, "…") for n in names if not namespace[n]]
    if missing:
        raise UserError(f"{' '.join(missing)} {'is' if len(missing) == 1 else 'are'} required (see --help)")


def check_ranges(*rules: tuple[bool, str]) -> None:
    """One line for the first setting out of its range: each rule is (in range, "--name must be …, not VALUE")."""
    for in_range, message in rules:
        if not in_range:
            raise UserError(message)


def constant_names(namespace: dict) -> list[str]:
    """The knobs of a script: upper-case module globals holding plain values. Dicts and sets (PRESETS, FLAGS,
    RESUME_MAY_CHANGE) are the script's data about its knobs, not knobs."""
    plain = (str, int, float, bool, list, type(None))
    return [k for k, v in namespace.items() if k.isupper() and not k.startswith("_") and isinstance(v, plain)]


def constant_comments(script: Path) -> dict[str, str]:
    """NAME -> the comment on its line in the constants block, and on the comment-only lines right under it
    that continue it, for --help."""
    found, last = {}, None
    for line in script.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)\s*=\s*(.*?)\s*#\s*(.*)$", line)
        if m:
            last = m.group(1) if m.group(1) not in found else None
            if last:
                found[last] = m.group(3)
        elif last and re.match(r"^\s{8,}#\s*(.*)$", line):  # an indented comment line continues it
            found[last] += " " + line.strip().lstrip("#").strip()
        else:
            last = None
    return found


def auto_or_bool(name: str, value) -> bool | None:
    """A constant that is "auto" or true/false (FAST): None for auto, else the bool; one line for anything else."""
    if str(value).strip().lower() == "auto":
        return None
    try:
        return parse_value(name, str(value), False)
    except UserError:
        raise UserError(f"--{name.lower()} is auto, true or false, not {value!r}") from None


def auto_or_number(name: str, value) -> float | None:
    """A constant that is "auto" or a number (LORA_DROPOUT, GRADIENT_CHECKPOINTING): None for auto, else the number;
    one line for anything else."""
    if str(value).strip().lower() == "auto":
        return None
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise UserError(f"--{name.lower()} is auto or a number, not {value!r}")
    return number


def parse_value(name: str, raw: str, default):
    """Read `raw` as the type of `default`; raise UserError if it is not one."""
    flag = f"--{name.lower()}"
    text = raw.strip()
    if isinstance(default, bool):
        low = text.lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        raise UserError(f"{flag} expects true or false, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise UserError(f"{flag} expects a whole number (default {default}), got {raw!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise UserError(f"{flag} expects a number (default {default}), got {raw!r}") from None
    if isinstance(default, list):
        if text.startswith("["):
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise UserError(f"{flag} expects a list like a,b,c or ['a','b'], got {raw!r}") from None
            if isinstance(value, list) and all(isinstance(x, str) for x in value):
                return value
            raise UserError(f"{flag} expects a list of names, got {raw!r}")
        return [x.strip() for x in text.split(",") if x.strip()]
    if default is None and text in ("None", "none", ""):
        return None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text


def apply_command_line(namespace: dict, argv: list[str], presets: dict, flags: dict[str, str],
                       script: Path, about: str) -> dict:
    """Apply `--preset NAME` first, then `--name=value` overrides, to the constants in `namespace`.

    `flags` are switches without a value (e.g. {"dry-run": "what it does"}). Returns the switches
    given, as {"dry-run": True}, plus {"preset": NAME} when a preset was chosen and {"constants": {NAME, …}},
    the constants set on the command line. `--help` prints the constants with their defaults and comments
    and exits.
    """
    names = constant_names(namespace)
    by_flag = {n.lower(): n for n in names}
    given: dict = {}
    overrides: list[tuple[str, str]] = []
    preset = None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(help_text(namespace, names, presets, flags, script, about))
            raise SystemExit(0)
        if not arg.startswith("--"):
            # an option typed without its two hyphens ("max_steps=3", "-max_steps=3", or "—max_steps=3" with the
            # long dash a word processor makes), or a bare value ("chat_ko.py outputs/tiny")
            name, eq, value = arg.lstrip("-—–").partition("=")
            if name.replace("-", "_").lower() in by_flag or name.replace("_", "-") in flags:
                meant = f"--{name}{eq}{shlex.quote(value) if eq else ''}"
                raise UserError(f"unexpected argument {arg!r}: did you mean {meant}? (options are --name=value; "
                                f"see --help)")
            raise UserError(f"unexpected argument {arg!r}: options are --name=value, e.g. --{names[0].lower()}=… "
                            f"(see --help)")
        key, eq, value = arg[2:].partition("=")
        if key.replace("-", "_").lower() in by_flag:  # --api-key and --api_key name the same constant
            key = key.replace("-", "_")
        if key.replace("_", "-") in flags:  # --dry_run is --dry-run: the spelling every other option uses
            key = key.replace("_", "-")
        if key in flags:
            if eq:
                raise UserError(f"--{key} takes no value")
            given[key] = True
            continue
        if key.lower() not in by_flag and not (key == "preset" and presets):  # before asking for its value
            known = list(by_flag) + list(flags) + (["preset"] if presets else [])
            close = difflib.get_close_matches(key.lower(), known, n=1) or [  # or its initials: --lr
                f for f in known if "".join(w[:1] for w in re.split("[_-]", f)) == key.lower()][:1]
            hint = f" (did you mean --{close[0]}?)" if close else ""
            valid = [f"--{f}" for f in by_flag] + (["--preset"] if presets else []) + [f"--{f}" for f in flags]
            raise UserError(f"unknown option --{key}{hint}; valid: {', '.join(valid)}")
        if not eq:
            if not args or args[0].startswith("--"):
                raise UserError(f"--{key} needs a value: --{key}=VALUE")
            value = args.pop(0)
        if key == "preset":
            if value not in presets:
                raise UserError(f"unknown preset {value!r}; presets: {', '.join(presets) or 'none'}")
            preset = value
            continue
        overrides.append((by_flag[key.lower()], value))

    if preset is not None:
        unknown = set(presets[preset]) - set(names)
        if unknown:  # a typo in a preset would otherwise add a constant nobody reads
            raise UserError(f"preset {preset!r} sets unknown constants: {', '.join(sorted(unknown))}")
        namespace.update(presets[preset])
        given["preset"] = preset
    set_names: set[str] = set()
    for name, raw in overrides:
        value = parse_value(name, raw, namespace[name])
        if isinstance(value, list) and name in set_names:  # a list constant given twice: --api_key a --api_key b
            value = namespace[name] + value
        namespace[name] = value
        set_names.add(name)
    given["constants"] = set_names
    return given


def help_text(namespace, names, presets, flags, script, about) -> str:
    comments = constant_comments(script)
    width = max(len(n) for n in names) + 2
    lines = [about.strip(), "", "Constants (edit them at the top of the script, or override: --name=value):"]
    for n in names:
        lines.append(f"  --{n.lower():<{width}} {namespace[n]!r:<34} {comments.get(n, '')}")
    lines.append("")
    for p, values in presets.items():
        lines.append(f"  --preset {p:<{width - 7}} sets " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
    for f, what in flags.items():
        lines.append(f"  --{f:<{width}} {what}")
    return "\n".join(lines)
