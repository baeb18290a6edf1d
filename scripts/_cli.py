"""Shared CLI behaviour: turn expected user errors into one clear line and exit code 2 (no traceback)."""

from __future__ import annotations

import sys
from typing import Callable, TypeVar

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
