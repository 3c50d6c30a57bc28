"""Spec text -> AST.  lark (LALR) does the parsing; this module turns lark's
trees into `ast` nodes with spans and lark's exceptions into diagnostics."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedInput
from lark.indenter import Indenter

from . import ast
from .diagnostics import CompileError, Diagnostic, Source, Span
from .parse_errors import _indent_span, _syntax_error

GRAMMAR = Path(__file__).with_name("grammar.lark")


class _BadDedent(Exception):
    """A line indented less than its block but more than the enclosing one."""

    def __init__(self, line: int, indent: int, levels: list[int]):
        super().__init__(f"bad dedent on line {line}")
        self.line, self.indent, self.levels = line, indent, levels


class _SpecIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types: ClassVar[list[str]] = ["LPAR", "LSQB"]
    CLOSE_PAREN_types: ClassVar[list[str]] = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 4

    def handle_NL(self, token: Token):
        # lark's version raises a bare DedentError without a position; report where it happens
        if self.paren_level <= 0:
            indent_str = token.rsplit("\n", 1)[1]
            indent = indent_str.count(" ") + indent_str.count("\t") * self.tab_len
            if indent < self.indent_level[-1] and indent not in self.indent_level:
                raise _BadDedent(token.end_line, indent, list(self.indent_level))
        yield from super().handle_NL(token)


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(
        GRAMMAR.read_text(),
        parser="lalr",
        postlex=_SpecIndenter(),
        propagate_positions=True,
        maybe_placeholders=True,
        cache=True,
    )


def _span_of(meta_or_token) -> Span:
    if isinstance(meta_or_token, Token):
        return Span(meta_or_token.line, meta_or_token.column, meta_or_token.end_line, meta_or_token.end_column)
    m = meta_or_token
    if getattr(m, "empty", False):
        return Span(1, 1, 1, 2)
    return Span(m.line, m.column, m.end_line, m.end_column)


def _tok(token: Token) -> Span:
    return _span_of(token)


_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@", "mod": "%", "floordiv": "//"}


@v_args(meta=True)
class _ToAst(Transformer):
    # ---------------- expressions
    def number(self, meta, children):
        (tok,) = children
        text = str(tok)
        is_int = text.isdigit()
        if is_int and len(text) > 309:  # beyond any double; the checker reports it (no int() of 4300+ digits)
            return ast.Number(_tok(tok), float("inf"), text)
        return ast.Number(_tok(tok), int(text) if is_int else float(text), text)

    def string(self, meta, children):
        (tok,) = children
        return ast.String(_tok(tok), str(tok)[1:-1])

    def name(self, meta, children):
        (tok,) = children
        return ast.Name(_tok(tok), str(tok))

    def list(self, meta, children):
        return ast.ListExpr(_span_of(meta), list(children))

    def neg(self, meta, children):
        return ast.Unary(_span_of(meta), "-", children[0])

    def pow(self, meta, children):
        left, _op, right = children
        return ast.Binary(_span_of(meta), "^", left, right)

    def compare(self, meta, children):
        left, op, right = children
        return ast.Binary(_span_of(meta), str(op), left, right)

    def attribute(self, meta, children):
        value, attr = children
        return ast.Attribute(_span_of(meta), value, str(attr), _tok(attr))

    def index(self, meta, children):
        value, index = children
        return ast.Index(_span_of(meta), value, index)

    def slice(self, meta, children):
        value, items = children
        return ast.Slice(_span_of(meta), value, items)

    def slice_items(self, meta, children):
        return list(children)

    def range_item(self, meta, children):
        start, stop = children
        return ast.Range(_span_of(meta), start, stop)

    def call(self, meta, children):
        func, arguments = children
        args, kwargs = arguments if arguments is not None else ([], [])
        return ast.Call(_span_of(meta), func, args, kwargs)

    def arguments(self, meta, children):
        args = [c for c in children if not isinstance(c, ast.Keyword)]
        kwargs = [c for c in children if isinstance(c, ast.Keyword)]
        return (args, kwargs)

    def keyword(self, meta, children):
        name, value = children
        return ast.Keyword(str(name), value, _span_of(meta))

    def __default__(self, data, children, meta):
        if data in _BINARY:
            left, right = children
            return ast.Binary(_span_of(meta), _BINARY[data], left, right)
        raise AssertionError(f"unhandled grammar rule {data}")

    # ---------------- dims and types
    def dim_name(self, meta, children):
        (tok,) = children
        return (ast.DimExpr.of(str(tok)), _tok(tok))

    def dim_int(self, meta, children):
        (tok,) = children
        return (ast.DimExpr.of(int(tok)), _tok(tok))

    def dim_add(self, meta, children):
        (a, _), (b, _) = children
        return (a + b, _span_of(meta))

    def dim_sub(self, meta, children):
        (a, _), (b, _) = children
        return (a + ast.DimExpr.of(-1) * b, _span_of(meta))

    def dim_mul(self, meta, children):
        (a, _sa), (b, _sb) = children
        prod = a * b
        if prod is None:
            raise CompileError([Diagnostic("this product of dimensions is not supported", _span_of(meta),
                                           "a dimension may be a sum of terms, each a number times a product of names")])
        return (prod, _span_of(meta))

    def dim_list(self, meta, children):
        return list(children)

    def tensor_type(self, meta, children):
        base, dims = children
        if dims is None:
            return ast.TypeSyntax(_span_of(meta), str(base), None)
        return ast.TypeSyntax(_span_of(meta), str(base), [d for d, _ in dims], [s for _, s in dims])

    def operator_type(self, meta, children):
        out_dims, in_dims = children
        return ast.TypeSyntax(_span_of(meta), "operator", [d for d, _ in in_dims], [s for _, s in in_dims],
                              out_dims=[d for d, _ in out_dims])

    def function_type(self, meta, children):  # function(real[n], real) -> real[n]: function data
        *args, result = children
        return ast.TypeSyntax(_span_of(meta), "function", result.dims, result.dim_spans,
                              args=[a for a in args if a is not None], result=result)

    # ---------------- annotations
    def flag(self, meta, children):
        (tok,) = children
        return ast.Annotation(str(tok), _tok(tok))

    def flag_call(self, meta, children):
        tok, arguments = children
        args, kwargs = arguments if arguments is not None else ([], [])
        return ast.Annotation(str(tok), _span_of(meta), list(args) + [k.value for k in kwargs])

    def name_list(self, meta, children):
        return [(str(t), _tok(t)) for t in children]

    # ---------------- statements
    def assign_stmt(self, meta, children):
        tok, value = children
        return ast.Assign(_span_of(meta), str(tok), _tok(tok), value)

    def local_stmt(self, meta, children):
        tok, value = children
        return ast.Local(_span_of(meta), str(tok), _tok(tok), value)

    def index_assign_stmt(self, meta, children):
        tok, index, value = children
        return ast.Assign(_span_of(meta), str(tok), _tok(tok), value, index=index)

    def repeat_stmt(self, meta, children):
        count, index, backward, *body = children
        return ast.Repeat(_span_of(meta), count, body, None if index is None else str(index),
                          None if index is None else _tok(index), backward is not None)

    # ---------------- declarations (returned as tagged tuples, assembled in start)
    def spec_decl(self, meta, children):
        tok, title = children
        return ("spec", str(tok), _tok(tok), None if title is None else str(title)[1:-1])

    def dims_decl(self, meta, children):
        (names,) = children
        return [("decl", ast.Decl("dim", n, s, _span_of(meta))) for n, s in names]

    def data_decl(self, meta, children):
        tok, typ, *annotations = children
        return ("decl", ast.Decl("data", str(tok), _tok(tok), _span_of(meta), type=typ,
                                 annotations=list(annotations)))

    def hyper_decl(self, meta, children):
        tok, typ, value = children
        return ("decl", ast.Decl("hyper", str(tok), _tok(tok), _span_of(meta), type=typ, value=value))

    def input_decl(self, meta, children):
        tok, typ = children
        return ("decl", ast.Decl("input", str(tok), _tok(tok), _span_of(meta), type=typ))

    def let_decl(self, meta, children):
        tok, value = children
        return ("decl", ast.Decl("let", str(tok), _tok(tok), _span_of(meta), value=value))

    def state_decl(self, meta, children):
        names, typ, value = children
        return [("decl", ast.Decl("state", n, s, _span_of(meta), type=typ, value=value)) for n, s in names]

    def param_decl(self, meta, children):
        tok, typ, value, *annotations = children
        return ("decl", ast.Decl("param", str(tok), _tok(tok), _span_of(meta), type=typ, value=value,
                                 annotations=list(annotations)))

    def net_decl(self, meta, children):
        tok, kind, arguments, *annotations = children
        args, kwargs = arguments if arguments is not None else ([], [])
        decl = ast.Decl("net", str(tok), _tok(tok), _span_of(meta), annotations=list(annotations),
                        net_kind=str(kind), net_args=list(args) + list(kwargs))
        decl.value = ast.Name(_tok(kind), str(kind))
        return ("decl", decl)

    def layers_decl(self, meta, children):
        (value,) = children
        return ("layers", value, _span_of(meta))

    def backward_decl(self, meta, children):
        kind, arg = children
        span = _tok(kind) if arg is None else Span(_tok(kind).line, _tok(kind).column, _tok(arg).end_line,
                                                   _tok(arg).end_column)
        return ("backward", str(kind) if arg is None else f"{kind}:{arg}", span)

    def require_decl(self, meta, children):
        value, message = children
        return ("decl", ast.Decl("require", "", value.span, _span_of(meta), value=value,
                                 message=None if message is None else str(message)[1:-1]))

    def output_decl(self, meta, children):
        (names,) = children
        return ("output", names, _span_of(meta))

    def step_block(self, meta, children):
        until, *stmts = children
        return ("step", stmts, _span_of(meta), until)

    def noise_decl(self, meta, children):
        tok, typ, dist, *annotations = children
        decl = ast.Decl("noise", str(tok), _tok(tok), _span_of(meta), type=typ, net_kind=str(dist),
                        annotations=list(annotations))
        decl.value = ast.Name(_tok(dist), str(dist))  # the distribution, for messages
        return ("decl", decl)

    def fn_decl(self, meta, children):
        tok, params, body = children
        return ("fn", ast.FnDecl(str(tok), _tok(tok), _span_of(meta), params or [], body))

    def final_block(self, meta, children):
        return ("final", list(children), _span_of(meta))

    def start(self, meta, children):
        return list(children)


def _leading_comments(text: str) -> list[str]:
    out = []
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("#"):
            out.append(stripped[1:].strip())
        elif stripped == "":
            if out:
                break
            continue
        else:
            break
    return out


def _first_line_span(span: Span, source: Source) -> Span:
    """A multi-line span cut to its first line (for pointing at a block header)."""
    if span.end_line == span.line:
        return span
    return Span(span.line, span.column, span.line, len(source.line_text(span.line).rstrip()) + 1)


def _twice(message: str, span: Span, first: Span, source: Source, hint: str | None = None,
           note: str = "first given here") -> Diagnostic:
    diag = Diagnostic(message, _first_line_span(span, source), hint)
    diag.notes.append((note, _first_line_span(first, source)))
    return diag


def parse(source: Source) -> ast.Spec:
    text = source.text
    if text.startswith("\ufeff"):  # a byte-order mark written by some editors: blank it (columns stay put)
        text = " " + text[1:]
    for number, row in enumerate(text.split("\n"), start=1):
        indent = row[: len(row) - len(row.lstrip(" \t"))]
        if "\t" in indent:
            raise CompileError([Diagnostic("tab character in indentation", Span.point(number, indent.index("\t") + 1),
                                           "indent with spaces (the lines of a block all by the same number)")],
                               source)
    if not text.endswith("\n"):
        text += "\n"
    try:
        items = _ToAst().transform(_lark().parse(text))
    except UnexpectedInput as err:
        raise CompileError([_syntax_error(err, source)], source) from None
    except _BadDedent as err:
        levels = " or ".join(str(n) for n in err.levels)
        raise CompileError([Diagnostic(f"syntax error: inconsistent indentation ({err.indent} spaces)",
                                       _indent_span(source, err.line),
                                       f"line it up with its block: the enclosing blocks are indented by {levels} "
                                       f"spaces")], source) from None
    except CompileError as err:
        err.source = source
        raise CompileError(err.diagnostics, source) from None
    except Exception as err:  # lark wraps transformer errors
        inner = getattr(err, "orig_exc", None)
        if isinstance(inner, CompileError):
            raise CompileError(inner.diagnostics, source) from None
        raise

    spec = ast.Spec(comments=_leading_comments(source.text))
    errors: list[Diagnostic] = []
    flat: list = []
    for item in items:
        flat.extend(item if isinstance(item, list) else [item])
    final_span = None
    for item in flat:
        tag = item[0]
        if tag == "decl":
            spec.decls.append(item[1])
        elif tag == "fn":
            spec.functions.append(item[1])
        elif tag == "spec":
            if spec.name is not None:
                errors.append(_twice("second `spec` line", item[2], spec.name_span, source,
                                     "a file holds one spec; remove this line", "the spec is named here"))
                continue
            spec.name, spec.name_span, spec.title = item[1], item[2], item[3]
        elif tag == "layers":
            if spec.layers is not None:
                errors.append(_twice("`layers` is given twice", item[2], spec.layers_span, source,
                                     "keep one `layers N` line (`--layers N` overrides it when compiling)"))
                continue
            spec.layers, spec.layers_span = item[1], item[2]
        elif tag == "backward":
            if spec.backward is not None:
                errors.append(_twice("`backward` is given twice", item[2], spec.backward_span, source,
                                     "keep one `backward MODE` line (`--backward MODE` overrides it when compiling)"))
                continue
            spec.backward, spec.backward_span = item[1], item[2]
        elif tag == "step":
            if spec.step is not None:
                errors.append(_twice("second `step:` block", item[2], spec.step_span, source,
                                     "put all update equations of one layer in one `step:` block"))
                continue
            spec.step, spec.step_span, spec.step_until = item[1], item[2], item[3]
        elif tag == "final":
            if spec.final is not None:
                errors.append(_twice("second `final:` block", item[2], final_span, source,
                                     "put all final-stage equations in one `final:` block"))
                continue
            spec.final, final_span = item[1], item[2]
        elif tag == "output":
            if spec.outputs:
                errors.append(_twice("`output` is given twice", item[2], spec.output_span, source,
                                     "list several outputs on one line: `output x, z`"))
                continue
            spec.outputs, spec.output_span = item[1], item[2]
    if errors:
        raise CompileError(errors, source)
    return spec
