"""The checker: AST -> typed IR (`ir.Program`).

It resolves names, infers shapes and dtypes with symbolic dims, validates the annotations, and records
for every expression the level at which it can be computed (see ir.py).  It checks the spec as written:
the compile-time options that re-tie or freeze parameters are applied to its program afterwards by the
schedule pass (compiler/schedule.py).  One concern per module:

    names          what a spec may call its symbols; the symbol-table entry
    scope          declaring names; types and dims; the depth (`num_layers`)
    expressions    names, numbers, operators, indexing, calls
    special_forms  prev, history_sum, grad, sub-network calls, user operators
    declarations   hyper, param, net, state, require, layers
    statements     the `step:` / `final:` blocks: let, assignment, repeat
    program        the whole-spec pass (`Checker`, `check`)
"""

from .names import MODULE_ATTRIBUTES
from .program import Checker, check

__all__ = ["MODULE_ATTRIBUTES", "Checker", "check"]
