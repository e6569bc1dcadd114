"""Loaded by schemathesis in tests/api/test_openapi.py (``SCHEMATHESIS_HOOKS``).

CPython 3.11.7 has a bug in ``ast.parse`` under deep recursion ("AST constructor recursion depth mismatch",
python/cpython#106905, fixed in 3.11.8), which hypothesis hits while it only builds the *name* of a filter for
its reprs; schemathesis reports that as an error of the operation being generated. The name is cosmetic: where it
fails, a plain one is used instead. Nothing else of the run changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis.internal import lambda_sources

_describe: Callable[[Any], str] = lambda_sources.lambda_description


def _lambda_description(f: Any) -> str:
    try:
        return _describe(f)
    except SystemError:
        return "lambda"


lambda_sources.lambda_description = _lambda_description
