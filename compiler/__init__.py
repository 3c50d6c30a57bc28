"""unroll.compiler: .unroll spec text in, readable PyTorch source out.

Pipeline (docs/design.md): parse (lark) -> AST -> check (names, shapes, dtypes)
-> dataflow graph (networkx) -> plan (hoisting, tying, trainability) -> emit.
This package never imports torch: compiling is text in, text out.
"""

from unroll import __version__  # written once, in runtime/_top/__init__.py

from .diagnostics import CompileError, Diagnostic
from .driver import CompileOptions, compile_source, compile_spec, resolve_spec

__all__ = [
    "CompileError",
    "CompileOptions",
    "Diagnostic",
    "__version__",
    "compile_source",
    "compile_spec",
    "resolve_spec",
]
