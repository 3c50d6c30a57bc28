"""Spec text -> AST.  lark (LALR) does the parsing; this module turns lark's
trees into `ast` nodes with spans and lark's exceptions into diagnostics."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.indenter import Indenter

from . import ast
from .diagnostics import CompileError, Diagnostic, Source, Span, did_you_mean

GRAMMAR = Path(__file__).with_name("grammar.lark")


class _BadDedent(Exception):
    """A line indented less than its block but more than the enclosing one."""

    def __init__(self, line: int, indent: int, levels: list[int]):
        super().__init__(f"bad dedent on line {line}")
        self.line, self.indent, self.levels = line, indent, levels


class _SpecIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
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

    def require_decl(self, meta, children):
        value, message = children
        return ("decl", ast.Decl("require", "", value.span, _span_of(meta), value=value,
                                 message=None if message is None else str(message)[1:-1]))

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
_DECL_KEYWORDS = ("spec", "dims", "data", "hyper", "input", "let", "state", "param", "net", "layers",
                  "step:", "final:", "output")
_OPEN = {"(": ")", "[": "]"}
_CLOSE = {")": "(", "]": "["}


def _token_desc(token: Token) -> str:
    if token.type == "_NL":
        return "end of line"
    if token.type == "_DEDENT":
        return "end of block"
    if token.type == "$END":
        return "end of file"
    return f"`{token}`"


def _open_brackets(text: str, line: int, column: int) -> list[tuple[str, int, int]]:
    """Brackets still open just before (line, column), skipping strings and comments."""
    stack: list[tuple[str, int, int]] = []
    for ln, row in enumerate(text.split("\n"), start=1):
        if ln > line:
            break
        in_string = False
        for col, ch in enumerate(row, start=1):
            if ln == line and col >= column:
                break
            if in_string:
                in_string = ch != '"'
            elif ch == '"':
                in_string = True
            elif ch == "#":
                break
            elif ch in _OPEN:
                stack.append((ch, ln, col))
            elif ch in _CLOSE and stack and stack[-1][0] == _CLOSE[ch]:
                stack.pop()
    return stack


def _unclosed(source: Source, line: int, column: int) -> Diagnostic | None:
    """The innermost bracket opened on an earlier line and never closed, if any."""
    stack = _open_brackets(source.text, line, column)
    if stack and stack[-1][1] < line:
        ch, ln, col = stack[-1]
        return Diagnostic(f"syntax error: `{ch}` is never closed", Span.point(ln, col),
                          f"add the missing `{_OPEN[ch]}`; inside brackets a line continues onto the next one")
    return None


def _indent_span(source: Source, line: int) -> Span:
    text = source.line_text(line)
    width = len(text) - len(text.lstrip(" \t"))
    return Span(line, 1, line, 1 + max(width, 1))


def _end_of_file(source: Source) -> Span:
    lines = source.text.rstrip("\n").split("\n")
    return Span.point(len(lines), len(lines[-1]) + 1)


def _syntax_error(err: UnexpectedInput, source: Source) -> Diagnostic:
    if isinstance(err, UnexpectedCharacters):
        text = source.line_text(err.line)
        ch = text[err.column - 1: err.column] or "?"
        if ch == '"':
            return Diagnostic("unterminated string", Span(err.line, err.column, err.line, len(text.rstrip()) + 1),
                              'close the string with `"` on the same line')
        unclosed = _unclosed(source, err.line, err.column)
        if unclosed is not None and ch in _CLOSE:
            return unclosed
        hint = None
        if ch == "'":
            hint = "strings use double quotes"
        elif ch in "{};":
            hint = "statements end at the end of the line; blocks are indented"
        elif not ch.isascii():
            hint = "names use ASCII letters, digits and `_` (write `theta`, not `θ`)"
        elif ch == "\\":
            hint = "a `\\` continues a line only as the last character of the line"
        return Diagnostic(f"unexpected character `{ch}`", Span.point(err.line, err.column), hint)
    if isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and (
            err.token.type == "$END" or err.token.line is None)):
        end = _end_of_file(source)
        unclosed = _unclosed(source, end.line + 1, 1)
        if unclosed is not None:
            return unclosed
        return Diagnostic("unexpected end of file", end, f"expected {_expected_text(err.expected)}")
    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "_INDENT":
            line = tok.end_line
            return Diagnostic("syntax error: unexpected indentation", _indent_span(source, line),
                              "only the lines of a `step:`, `final:` or `repeat N:` block are indented, "
                              "all by the same amount")
        unclosed = _unclosed(source, tok.line, tok.column)
        if unclosed is not None:
            return unclosed
        line, col = tok.line, tok.column
        width = len(str(tok)) if tok.type not in ("_NL", "_DEDENT") else 1
        if tok.type in ("_NL", "_DEDENT"):
            # point just after the last character of the line
            text = source.line_text(line)
            code = text.split("#", 1)[0] if '"' not in text else text
            col = len(code.rstrip()) + 1
            width = 1
        span = Span(line, col, line, col + width)
        text = source.line_text(line)
        first_col = len(text) - len(text.lstrip(" ")) + 1
        words = text.split("#", 1)[0].split()
        first_word = words[0] if words else ""
        message = f"syntax error: unexpected {_token_desc(tok)}"
        hint = f"expected {_expected_text(err.expected)}"
        prev = _previous_code_line(source, line)
        prev_indent = None if prev is None else len(prev) - len(prev.lstrip(" "))
        if col == first_col and prev is not None and prev.rstrip().endswith(":") and first_col - 1 <= prev_indent \
                and tok.type not in ("_NL", "_DEDENT"):
            message = f"syntax error: expected an indented block after `{prev.strip()}`"
            hint = "indent the statements of the block, e.g. by 4 spaces"
        elif tok.type == "NAME" and col == first_col and str(tok) not in _KEYWORDS and first_col == 1:
            # a line at the top level that does not start with a declaration keyword
            message = f"syntax error: `{tok}` does not start a declaration"
            guess = did_you_mean(str(tok), _KEYWORDS)
            if guess:
                hint = guess
            elif len(words) > 1 and words[1].startswith("=") and not words[1].startswith("=="):
                hint = (f"define a constant with `let {tok} = ...`; updates of states go in the indented "
                        "`step:` block")
            else:
                hint = "a line starts with one of: " + ", ".join(f"`{k}`" for k in _DECL_KEYWORDS)
        elif first_word and first_word not in _KEYWORDS and col > first_col and \
                text[first_col - 1:].startswith(first_word + " ") and tok.type == "NAME" and \
                text[first_col - 1 + len(first_word):col - 1].strip() == "" and did_you_mean(first_word, _KEYWORDS):
            # `lett r = ...`, `parm theta ...`: a misspelt keyword followed by a name
            span = Span(line, first_col, line, first_col + len(first_word))
            message = f"syntax error: unknown keyword `{first_word}`"
            hint = did_you_mean(first_word, _KEYWORDS)
        elif str(tok) in ("=",) and "EQUAL" not in err.expected:
            hint = "assignments are only allowed inside `step:` or `final:` blocks, and declarations need a keyword"
        elif tok.type == "NAME" and str(tok) in _KEYWORDS:
            hint = f"`{tok}` is a keyword; it starts a declaration on a line of its own"
        elif tok.type in ("_NL", "_DEDENT") and set(err.expected) == {"EQUAL"}:
            if first_word in ("state", "param"):
                message = f"syntax error: {'a state' if first_word == 'state' else 'a parameter'} needs an " \
                          "initial value"
                hint = f"add `= ` and the value at the end of the line, e.g. `{text.split('#', 1)[0].strip()} = 0`"
            else:
                hint = "expected `=` and a value"
        elif tok.type == "NAME" and "COLON" in err.expected and len(words) > 1 and \
                first_word in ("data", "input", "state", "param", "hyper"):
            message = f"syntax error: expected `:` between `{words[1]}` and its type"
            rest = text[col - 1:].split("#", 1)[0].strip()
            hint = f"write `{first_word} {words[1]} : {rest}`"
        elif str(tok) in _CLOSE:
            hint = f"this `{tok}` has no matching `{_CLOSE[str(tok)]}`"
        elif first_word == "output":
            hint = "`output` lists names separated by commas, e.g. `output x, z`"
        stack = _open_brackets(source.text, line, col)
        if stack and stack[-1][1] == line and _OPEN[stack[-1][0]] != str(tok):
            ch, _, bcol = stack[-1]
            hint = f"the `{ch}` at column {bcol} is not closed; add `{_OPEN[ch]}`"
        return Diagnostic(message, span, hint)
    return Diagnostic(f"syntax error: {err}")


def _previous_code_line(source: Source, line: int) -> str | None:
    """The nearest line above `line` that holds code (not blank, not only a comment)."""
    for ln in range(line - 1, 0, -1):
        text = source.line_text(ln)
        if text.strip() and not text.strip().startswith("#"):
            return text.split("#", 1)[0] if '"' not in text else text
    return None


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
        elif tag == "step":
            if spec.step is not None:
                errors.append(_twice("second `step:` block", item[2], spec.step_span, source,
                                     "put all update equations of one layer in one `step:` block"))
                continue
            spec.step, spec.step_span = item[1], item[2]
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
