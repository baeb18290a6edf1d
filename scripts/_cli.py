"""Shared CLI behaviour: turn expected user errors into one clear line and exit code 2 (no traceback)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional, Type, TypeVar, Union

T = TypeVar("T")

USER_ERRORS = (FileNotFoundError, ValueError, FloatingPointError, KeyError)


def run_cli(main: Callable[[], T]) -> T:
    try:
        return main()
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except RuntimeError as exc:
        from trainers.distributed import DistributedError

        if not isinstance(exc, DistributedError):
            raise
        # Another rank died or hung: say so and leave at once. The process group's teardown at interpreter exit can
        # abort (SIGABRT) with a dead peer, which would bury the message under a C++ stack and exit status 134.
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(1)


def parse_config(config_type: Type[T], **kwargs) -> T:
    """`tyro.cli(config_type)`, except that a ValueError from the config's `__post_init__` validation propagates
    as a ValueError (so `run_cli` prints it as one line) instead of tyro's framed "Value error" box.

    This uses tyro's parse-error hook (`tyro._errors.on_parse_error`, tyro >= 1.0, marked experimental by tyro);
    when it is missing, tyro's own box is printed, still without a traceback and with exit code 2. Type errors
    tyro finds while parsing (e.g. `--max-steps abc`) keep tyro's box, which names the option.
    """
    import tyro

    try:
        from tyro import _errors as tyro_errors
    except ImportError:  # pragma: no cover - older tyro
        tyro_errors = None
    on_parse_error = getattr(tyro_errors, "on_parse_error", None)
    failure_type = getattr(tyro_errors, "InstantiationFailure", None)
    if on_parse_error is None or failure_type is None:  # pragma: no cover - older tyro
        return tyro.cli(config_type, **kwargs)

    def one_line(event) -> None:
        message = getattr(event, "message", None)
        if not (isinstance(event, failure_type) and isinstance(message, str) and message.strip()):
            return  # anything else: tyro's own error box
        message = " ".join(message.split())
        try:  # a value tyro could not convert: name the option it came from
            name = event.argument.display_name() if getattr(event, "argument", None) is not None else None
        except Exception:
            name = None
        if name and name not in message:
            message = f"{name}: {message}"
        raise ValueError(message)

    with on_parse_error(one_line):
        return tyro.cli(config_type, **kwargs)


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and not probe.is_symlink():
        if probe.parent == probe:
            break
        probe = probe.parent
    return probe


def check_output_dir(path: Union[str, Path], option: str, shown: Optional[Union[str, Path]] = None) -> None:
    """Fail early, with one line naming `option`, when the folder `path` cannot be created or written.

    Checked before any data loads: the nearest existing ancestor must be a writable directory (not a file),
    and a real mkdir of the missing folders plus a probe file must succeed. Everything the probe created is
    removed again, so a run that fails later leaves nothing behind. `shown`: the path the user gave, if not
    `path` itself (a file to be written in `path`).
    """
    path = Path(path).expanduser()
    shown = path if shown is None else shown
    absolute = Path(os.path.abspath(path))
    existing = _nearest_existing(absolute)
    hint = "choose a writable folder"
    if existing.exists() and not existing.is_dir():
        raise ValueError(
            f"{option} {shown}: cannot create the folder, {existing} is a file, not a folder; {hint}"
            if existing != absolute else f"{option} {shown}: {existing} is a file, not a folder; {hint}"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {shown}: {existing} is not writable; {hint}")
    created = []
    try:
        missing = []
        probe = absolute
        while probe != existing:
            missing.append(probe)
            probe = probe.parent
        for folder in reversed(missing):
            os.mkdir(folder)
            created.append(folder)
        fd, probe_file = tempfile.mkstemp(prefix=".sf-write-check.", dir=absolute)
        os.close(fd)
        os.unlink(probe_file)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ValueError(f"{option} {shown}: cannot write there ({reason}); {hint}") from None
    finally:
        for folder in reversed(created):
            try:
                os.rmdir(folder)
            except OSError:
                pass


def check_output_file(path: Union[str, Path], option: str) -> None:
    """Like `check_output_dir` for a file to be written: its folder must be creatable and writable, and the
    path itself must not be an existing folder."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a folder, expected a file name")
    check_output_dir(path.parent, option, shown=path)


def option_port(port: Optional[int], default: int = 8080):
    """(port to bind, strict) for a CLI port option whose default is None: an explicit port must be free."""
    return (default, False) if port is None else (port, True)
