"""Syntax errors of the spec language as located diagnostics: what the parser expected, in words,
where a bracket was left open, and a hint that fits the mistake."""

from __future__ import annotations

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .diagnostics import Diagnostic, Source, Span, did_you_mean


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
             "output", "step", "final", "repeat", "noise")
_DECL_KEYWORDS = ("spec", "dims", "data", "hyper", "input", "let", "state", "param", "net", "layers",
                  "step:", "final:", "output", "noise")
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
            if ch == "[" and str(tok) == ":":  # `x[::2]`, `x[1:2:3]`: a slice with a step
                hint = "a slice is `start:stop` (`x[1:]`, `x[:-1]`, `X[:, 1:]`); a step (`::2`) is not supported"
        return Diagnostic(message, span, hint)
    return Diagnostic(f"syntax error: {err}")


def _previous_code_line(source: Source, line: int) -> str | None:
    """The nearest line above `line` that holds code (not blank, not only a comment)."""
    for ln in range(line - 1, 0, -1):
        text = source.line_text(ln)
        if text.strip() and not text.strip().startswith("#"):
            return text.split("#", 1)[0] if '"' not in text else text
    return None
