"""`grad(f, x)`: the gradient of a smooth scalar expression, derived with sympy.

The expression is translated to a sympy matrix expression (vectors are column
MatrixSymbols, matrices MatrixSymbols, scalars Symbols), differentiated with
sympy's matrix calculus, and translated back into spec AST, which the checker
then type-checks like hand-written code.  Supported: sums and differences,
scalar multiples and quotients, `@`, `.T`/`.H` (real data), `norm(u)^2`,
`dot(u, v)`, `sum(u)` and powers of scalars: every quadratic data term such as
½‖Ax − y‖², weighted least squares ½(Ax − y)ᵀW(Ax − y), Tikhonov λ/2‖x‖².

sympy is imported only when a spec uses `grad`, so compiling other specs stays fast.
"""

from __future__ import annotations

from . import ast
from .ast import DimExpr
from .diagnostics import Span


class GradError(Exception):
    pass


def gradient_ast(f: ast.Expr, wrt: str, symbols: dict[str, tuple[str, tuple]], span: Span) -> ast.Expr:
    import sympy as sp
    from sympy import MatrixSymbol

    dims: dict[str, object] = {}

    def dim(d: DimExpr):
        expr = sp.Integer(d.const)
        for name, coef in d.terms:
            term = sp.Integer(coef)
            for part in name.split("*"):
                term = term * dims.setdefault(part, sp.Symbol(part, integer=True, positive=True))
            expr = expr + term
        return expr

    table: dict[str, object] = {}
    ranks: dict[str, int] = {}

    def symbol(name: str):
        if name in table:
            return table[name]
        if name not in symbols:
            raise GradError(f"unknown name `{name}`")
        kind, shape = symbols[name]
        if kind in ("net", "operator"):
            raise GradError(f"`{name}` is not differentiable here")
        if kind == "dim":
            obj = dims.setdefault(name, sp.Symbol(name, integer=True, positive=True))
            ranks[name] = 0
        elif len(shape) == 0:
            obj = sp.Symbol(name, real=True)
            ranks[name] = 0
        elif len(shape) == 1:
            obj = MatrixSymbol(name, dim(shape[0]), 1)
            ranks[name] = 1
        elif len(shape) == 2:
            obj = MatrixSymbol(name, dim(shape[0]), dim(shape[1]))
            ranks[name] = 2
        else:
            raise GradError(f"`{name}` has rank {len(shape)}; grad handles scalars, vectors and matrices")
        table[name] = obj
        return obj

    def is_matrix(v) -> bool:
        return getattr(v, "is_Matrix", False) or isinstance(v, sp.MatrixExpr)

    def to_sympy(e: ast.Expr):
        e = ast.unwrap_inlined(e)  # a `fn` call: its body
        if isinstance(e, ast.Number):
            return sp.Rational(e.text) if "." in e.text or "e" in e.text.lower() else sp.Integer(e.value)
        if isinstance(e, ast.Name):
            return symbol(e.name)
        if isinstance(e, ast.Unary):
            return -to_sympy(e.operand)
        if isinstance(e, ast.Attribute) and e.attr in ("T", "H"):
            v = to_sympy(e.value)
            return v.T if is_matrix(v) else v
        if isinstance(e, ast.Binary):
            left, right = ast.unwrap_inlined(e.left), ast.unwrap_inlined(e.right)
            if e.op == "^" and isinstance(left, ast.Call) and isinstance(left.func, ast.Name) \
                    and left.func.name == "norm" and isinstance(right, ast.Number) and right.value == 2:
                u = to_sympy(left.args[0])
                if not is_matrix(u):
                    return u ** 2
                return (u.T * u)
            a, b = to_sympy(e.left), to_sympy(e.right)
            if e.op == "+":
                return _add(a, b)
            if e.op == "-":
                return _add(a, -b)
            if e.op == "*":
                if is_matrix(a) and is_matrix(b) and not (_is_1x1(a) or _is_1x1(b)):
                    raise GradError("elementwise products of two tensors are not supported")
                return a * b
            if e.op == "/":
                if is_matrix(b):
                    raise GradError("division by a tensor is not supported")
                return a / b
            if e.op == "@":
                return a * b if not (_is_col(a) and _is_col(b)) else a.T * b
            if e.op == "^":
                if is_matrix(a):
                    raise GradError("powers of tensors other than `norm(u)^2` are not supported")
                return a ** b
            raise GradError(f"operator `{e.op}` is not supported")
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
            name = e.func.name
            args = [to_sympy(a) for a in e.args]
            if name == "dot" and len(args) == 2:
                return args[0].T * args[1] if is_matrix(args[0]) else args[0] * args[1]
            if name == "sum" and len(args) == 1:
                u = args[0]
                return sp.OneMatrix(1, u.shape[0]) * u if is_matrix(u) else u
            if name in ("exp", "log", "sqrt") and len(args) == 1 and not is_matrix(args[0]):
                return getattr(sp, name)(args[0])
            raise GradError(f"`{name}` is not supported inside grad")
        raise GradError("this expression is not supported inside grad")

    def _is_1x1(v):
        return is_matrix(v) and v.shape == (1, 1)

    def _is_col(v):
        return is_matrix(v) and v.shape[1] == 1 and v.shape[0] != 1

    def _add(a, b):
        if is_matrix(a) != is_matrix(b) and not (_is_1x1(a) or _is_1x1(b)):
            raise GradError("adding a scalar to a tensor is not supported inside grad")
        if _is_1x1(a) and not is_matrix(b):
            return a + sp.Identity(1) * b
        if _is_1x1(b) and not is_matrix(a):
            return sp.Identity(1) * a + b
        return a + b

    fx = to_sympy(f)
    x = symbol(wrt)
    if ranks.get(wrt) == 2:
        raise GradError("grad with respect to a matrix is not supported yet")
    try:
        g = sp.diff(fx, x) if is_matrix(x) else sp.diff(fx[0, 0] if _is_1x1(fx) else fx, x)
    except Exception as err:  # noqa: BLE001 - sympy raises many kinds of errors on unsupported forms
        raise GradError(f"sympy could not differentiate it ({type(err).__name__})") from None
    if is_matrix(g) and g.shape == (1, 1) and ranks.get(wrt) != 0:
        g = g.T
    if is_matrix(g) and g.shape[1] != 1 and g.shape[0] == 1:
        g = g.T
    return _to_ast(sp.simplify(g) if not is_matrix(g) else g, span, ranks, sp)


def _to_ast(expr, span: Span, ranks, sp) -> ast.Expr:
    def num(value) -> ast.Expr:
        if value.is_Rational and max(abs(int(value.p)), abs(int(value.q))) >= 2**53:  # beyond exact doubles:
            value = sp.Float(value)  # a float literal (a huge Python int overflows torch's int64 scalars)
        if value.is_Integer:
            v = int(value)
            node = ast.Number(span, abs(v), str(abs(v)))
            return ast.Unary(span, "-", node) if v < 0 else node
        if value.is_Rational:
            p, q = int(value.p), int(value.q)
            node = ast.Binary(span, "/", ast.Number(span, abs(p), str(abs(p))), ast.Number(span, q, str(q)))
            return ast.Unary(span, "-", node) if p < 0 else node
        f = float(value)
        return ast.Number(span, f, repr(f))

    def conv(e) -> ast.Expr:
        if isinstance(e, (sp.MatrixSymbol, sp.Symbol)):
            return ast.Name(span, str(e.name))
        if e.is_Number:
            return num(e)
        if isinstance(e, sp.Transpose):
            inner = e.arg
            if isinstance(inner, sp.MatrixSymbol) and inner.shape[1] == 1:
                return conv(inner)  # a row vector: vectors carry no orientation in the language
            return ast.Attribute(span, conv(inner), "T", span)
        if isinstance(e, (sp.MatAdd, sp.Add)):
            terms = list(e.args)
            out = conv(terms[0])
            for t in terms[1:]:
                coeff, rest = _split_negative(t, sp)
                out = ast.Binary(span, "-" if coeff else "+", out, conv(rest))
            return out
        if isinstance(e, (sp.MatMul, sp.Mul)):
            scalars = [a for a in e.args if not getattr(a, "is_Matrix", False)]
            mats = [a for a in e.args if getattr(a, "is_Matrix", False)]
            out = None
            for m in mats:
                piece = conv(m)
                out = piece if out is None else ast.Binary(span, "@", out, piece)
            for s in scalars:
                if s == -1:
                    out = ast.Unary(span, "-", out) if out is not None else num(s)
                    continue
                piece = conv(s)
                out = piece if out is None else ast.Binary(span, "*", piece, out)
            return out
        if isinstance(e, sp.Pow):
            return ast.Binary(span, "^", conv(e.base), conv(e.exp))
        if isinstance(e, sp.Identity):
            return ast.Call(span, ast.Name(span, "eye"), [_dim_ast(e.shape[0], span, sp)], [])
        if isinstance(e, sp.ZeroMatrix):
            return ast.Call(span, ast.Name(span, "zeros"), [_dim_ast(e.shape[0], span, sp)], [])
        if isinstance(e, sp.OneMatrix):
            return ast.Call(span, ast.Name(span, "ones"), [_dim_ast(e.shape[0], span, sp)], [])
        if isinstance(e, (sp.exp, sp.log)):
            return ast.Call(span, ast.Name(span, type(e).__name__), [conv(e.args[0])], [])
        raise GradError(f"cannot translate the derivative back ({type(e).__name__})")

    return conv(expr)


def _split_negative(term, sp):
    """(True, -term) when a sum's term carries a negative coefficient."""
    coeff = term.as_coeff_mmul()[0] if hasattr(term, "as_coeff_mmul") else term.as_coeff_Mul()[0]
    if coeff.is_Number and coeff < 0:
        return True, -term
    return False, term


def _dim_ast(d, span, sp) -> ast.Expr:
    if d.is_Integer:
        return ast.Number(span, int(d), str(int(d)))
    if isinstance(d, sp.Symbol):
        return ast.Name(span, d.name)
    raise GradError("composite dimension in a derivative")
