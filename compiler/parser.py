"""Spec text -> AST.  lark (LALR) does the parsing; this module turns lark's
trees into `ast` nodes with spans and lark's exceptions into diagnostics."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.indenter import Indenter

from . import ast
from .diagnostics import CompileError, Diagnostic, Source, Span

GRAMMAR = Path(__file__).with_name("grammar.lark")


class _SpecIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 4


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


_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@"}


@v_args(meta=True)
class _ToAst(Transformer):
    # ---------------- expressions
    def number(self, meta, children):
        (tok,) = children
        text = str(tok)
        is_int = text.isdigit()
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

    def dim_mul(self, meta, children):
        (a, sa), (b, sb) = children
        prod = a * b
        if prod is None:
            raise CompileError([Diagnostic("this product of dimensions is not supported", _span_of(meta),
                                           "a dimension may be a sum of terms, each a number times at most two names")])
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

    def repeat_stmt(self, meta, children):
        count, *body = children
        return ast.Repeat(_span_of(meta), count, body)

    # ---------------- declarations (returned as tagged tuples, assembled in start)
    def spec_decl(self, meta, children):
        tok, title = children
        return ("spec", str(tok), _tok(tok), None if title is None else str(title)[1:-1])

    def dims_decl(self, meta, children):
        (names,) = children
        return [("decl", ast.Decl("dim", n, s, _span_of(meta))) for n, s in names]

    def data_decl(self, meta, children):
        tok, typ = children
        return ("decl", ast.Decl("data", str(tok), _tok(tok), _span_of(meta), type=typ))

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

    def output_decl(self, meta, children):
        (names,) = children
        return ("output", names, _span_of(meta))

    def step_block(self, meta, children):
        return ("step", list(children), _span_of(meta))

    def final_block(self, meta, children):
        return ("final", list(children), _span_of(meta))

    def start(self, meta, children):
        return list(children)


def _expected_text(expected) -> str:
    pretty = {
        "NAME": "a name", "NUMBER": "a number", "INT": "an integer", "STRING": "a string",
        "_NL": "end of line", "_INDENT": "an indented block", "_DEDENT": "end of block",
        "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`", "COMMA": "`,`", "COLON": "`:`",
        "EQUAL": "`=`", "PLUS": "`+`", "MINUS": "`-`", "STAR": "`*`", "SLASH": "`/`", "AT": "`@`",
        "DOT": "`.`", "POW": "`^`", "COMPARE": "a comparison", "__ANON_0": "`<-`",
    }
    names = sorted({pretty.get(e, f"`{e.lower()}`" if e.isupper() and len(e) < 12 else e) for e in expected})
    if len(names) > 6:
        names = names[:6] + ["..."]
    return ", ".join(names)


_KEYWORDS = ("spec", "dims", "data", "hyper", "input", "let", "state", "param", "net", "layers",
             "output", "step", "final", "repeat")


def _token_desc(token: Token) -> str:
    if token.type == "_NL":
        return "end of line"
    if token.type in ("_INDENT",):
        return "unexpected indentation"
    if token.type == "_DEDENT":
        return "end of block"
    if token.type == "$END":
        return "end of file"
    return f"`{token}`"


def _syntax_error(err: UnexpectedInput, source: Source) -> Diagnostic:
    if isinstance(err, UnexpectedCharacters):
        ch = source.line_text(err.line)[err.column - 1: err.column] or "?"
        hint = None
        if ch == "'":
            hint = "strings use double quotes"
        elif ch in "{};":
            hint = "statements end at the end of the line; blocks are indented"
        return Diagnostic(f"unexpected character `{ch}`", Span.point(err.line, err.column), hint)
    if isinstance(err, UnexpectedEOF):
        lines = source.text.rstrip("\n").split("\n")
        return Diagnostic("unexpected end of file", Span.point(len(lines), len(lines[-1]) + 1),
                          f"expected {_expected_text(err.expected)}")
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END" or tok.line is None:
            lines = source.text.rstrip("\n").split("\n")
            return Diagnostic("unexpected end of file", Span.point(len(lines), len(lines[-1]) + 1),
                              f"expected {_expected_text(err.expected)}")
        line, col = tok.line, tok.column
        width = len(str(tok)) if tok.type not in ("_NL", "_INDENT", "_DEDENT") else 1
        if tok.type == "_NL":
            # point just after the last character of the line
            text = source.line_text(line)
            col = len(text.rstrip()) + 1
            width = 1
        hint = f"expected {_expected_text(err.expected)}"
        if tok.type == "_INDENT":
            hint = "only the statements of `step:`, `final:` and `repeat N:` blocks are indented"
        elif str(tok) in ("=",) and "EQUAL" not in err.expected:
            hint = "assignments are only allowed inside `step:` or `final:` blocks, and declarations need a keyword"
        elif tok.type == "NAME" and str(tok) in _KEYWORDS:
            hint = f"`{tok}` is a keyword; it starts a declaration on a line of its own"
        return Diagnostic(f"syntax error: unexpected {_token_desc(tok)}", Span(line, col, line, col + width), hint)
    return Diagnostic(f"syntax error: {err}")


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


def parse(source: Source) -> ast.Spec:
    text = source.text
    if "\t" in text:
        line = text[: text.index("\t")].count("\n") + 1
        col = len(text[: text.index("\t")].split("\n")[-1]) + 1
        raise CompileError([Diagnostic("tab character in spec", Span.point(line, col),
                                       "indent with spaces")], source)
    if not text.endswith("\n"):
        text += "\n"
    try:
        items = _ToAst().transform(_lark().parse(text))
    except UnexpectedInput as err:
        raise CompileError([_syntax_error(err, source)], source) from None
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
    for item in flat:
        tag = item[0]
        if tag == "decl":
            spec.decls.append(item[1])
        elif tag == "spec":
            if spec.name is not None:
                errors.append(Diagnostic("second `spec` line", item[2], "a file holds one spec"))
            spec.name, spec.name_span, spec.title = item[1], item[2], item[3]
        elif tag == "layers":
            if spec.layers is not None:
                errors.append(Diagnostic("`layers` is given twice", item[2]))
            spec.layers, spec.layers_span = item[1], item[2]
        elif tag == "step":
            if spec.step is not None:
                errors.append(Diagnostic("second `step:` block", item[2], "put all update equations in one block"))
            spec.step, spec.step_span = item[1], item[2]
        elif tag == "final":
            if spec.final is not None:
                errors.append(Diagnostic("second `final:` block", item[2]))
            spec.final = item[1]
        elif tag == "output":
            if spec.outputs:
                errors.append(Diagnostic("`output` is given twice", item[2], "list several outputs on one line: `output x, z`"))
            spec.outputs, spec.output_span = item[1], item[2]
    if errors:
        raise CompileError(errors, source)
    return spec
