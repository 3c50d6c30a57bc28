"""The operator reference, generated from the registry (compiler/operators/).

`markdown_table()` is the section of docs/language.md between the two marker comments below;
`unrollc ops --markdown` prints it, and

    python -m unroll.compiler.opdocs docs/language.md            # rewrite the section in place
    python -m unroll.compiler.opdocs --check docs/language.md    # exit 1 if it is out of date

keeps the manual in step (tests/test_docs.py checks that it is).  Every table row comes from one
registry entry (`usage`, `doc`, `shape`, `dtype`, `gradient`, `latex`, `example`, `result`); the
examples are checked by the test-suite in EXAMPLE_ENV.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .operators import (
    INTERNAL_OPERATORS,
    OPERATORS,
    SPECIAL_FORM_DOCS,
    SPECIAL_FORMS,
    Operator,
    function_names,
)

BEGIN = "<!-- BEGIN GENERATED OPERATOR TABLES -->"
END = "<!-- END GENERATED OPERATOR TABLES -->"

# the declarations every table example is checked against (`{}` is the example)
EXAMPLE_ENV = """spec examples "the environment of the operator tables"
dims n, m, h, w, C, T, F, N
data A : real[n, m]
data Ac : complex[n, m]
data B : real[m, m]
data d : real[C, 3, 3]
data W : real[C, 9]
hyper lam = 0.1
hyper p = 0.5
hyper k : int = 3
input y : real[n]
input img : real[h, w]
input fine : real[2*h, 2*w]
input sig : real[T]
input S : complex[F, N]
param beta : real[num_layers] = onehot(layer, num_layers)  learned per_layer
state x : real[m] = 0
state z : complex[m] = 0
layers 2
step:
    let e = {}
    x = x
output x
"""

# category -> (heading, a paragraph before the table); tables appear in this order
CATEGORIES = {
    "arithmetic": ("Arithmetic, comparison and indexing (syntax)", ""),
    "linear algebra": ("Linear algebra", ""),
    "construction": ("Construction", ""),
    "proximal": ("Proximal", ""),
    "elementwise": ("Elementwise", ""),
    "complex": ("Complex", ""),
    "reduction": ("Reduction", ""),
    "selection": ("Selection", ""),
    "probability": ("Probability (along an axis)", ""),
    "normalisation": ("Normalisation", ""),
    "fourier": ("Fourier", ""),
    "convolution": ("Convolution", ""),
    "patches": ("Patches", ""),
    "resampling": ("Resampling", ""),
    "influence": ("Learned influence functions", ""),
    "kernels": ("Kernels", ("Blur kernels live in two forms: small `[s, s]` arrays with their centre at index "
                            "(s−1)//2 (what\n`conv2` and `otf` take), or image-sized arrays with their origin at "
                            "[0, 0] (what `fft2` of an\nestimated kernel gives, as in DUBLID's kernel step).")),
}

# indexing is syntax handled by the checker itself (no registry entry)
INDEXING_ROW = ("a[i]", "(indexing)", "removes the first logical axis; i an int scalar", "same", "B[0]", "real[m]")

GREEK = {"θ": "\\theta", "τ": "\\tau"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{_cell(text)}`"


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _usage(forms) -> str:
    return ", ".join(_code(f) for f in forms)


def latex_of(op: Operator) -> str:
    """The entry's LaTeX applied to the argument names of its first call form (`soft(v, θ)`)."""
    form = next((f for f in op.usage if "(" in f), op.usage[0])
    if "(" in form:
        names = [n.strip() for n in form[form.index("(") + 1:form.rindex(")")].split(",")]
    else:
        names = re.findall(r"\b[a-z]\w*", form)
    return op.latex([GREEK.get(n, n) for n in names if n != "..."])


def environment_line() -> str:
    """The declarations of EXAMPLE_ENV in words: `x: real[m] (state), ...` (states, inputs, data, ...)."""
    declared = {}
    for line in EXAMPLE_ENV.splitlines():
        m = re.match(r"(state|input|data|param|hyper)\s+(\w+)\s*(?::\s*([^=]+?))?\s*(?:=.*)?$", line)
        if m:
            kind, name, type_text = m.groups()
            kind = "per-layer param" if kind == "param" and "per_layer" in line else kind
            declared.setdefault(kind, []).append(f"{name}: {type_text or 'real'}")
    parts = [f"{entry} ({kind})" for kind in ("state", "input", "data", "per-layer param", "hyper")
             for entry in declared.get(kind, [])]
    return ("Examples are checked in this environment: " + ", ".join(parts) + ". *Result* is the type the checker "
            "infers for the example (logical shape, without the batch axis).")


def _by_category() -> dict[str, list[Operator]]:
    groups: dict[str, list[Operator]] = {c: [] for c in CATEGORIES}
    for op in OPERATORS.values():
        if "keyword_form_of" in op.extra:
            continue  # documented in the row of the operator it is a form of (`max(v, axis=k)`)
        groups.setdefault(op.category, []).append(op)
    return groups


def markdown_table() -> str:
    """The generated section of docs/language.md (without the marker comments)."""
    out = ["", environment_line(), ""]
    syntax_forms = 1  # indexing
    for category, ops in _by_category().items():
        if not ops:
            continue
        heading, note = CATEGORIES.get(category, (category.capitalize(), ""))
        out += [f"#### {heading}", ""] + ([note, ""] if note else [])
        if category == "arithmetic":
            out += [_row(["syntax", "registry name", "shape rule", "dtype rule", "example", "result"]),
                    "|---|---|---|---|---|---|"]
            for op in ops:
                out.append(_row([_usage(op.usage), op.name, _cell(op.shape), _cell(op.dtype), _code(op.example),
                                 _code(op.result)]))
            syntax, name, shape, dtype, example, result = INDEXING_ROW
            out.append(_row([_code(syntax), name, shape, dtype, _code(example), _code(result)]))
        else:
            out += [_row(["operator", "meaning", "shape rule", "dtype", "gradient", "LaTeX", "example", "result"]),
                    "|---|---|---|---|---|---|---|---|"]
            for op in ops:
                out.append(_row([_usage(op.usage), _cell(op.doc), _cell(op.shape), _cell(op.dtype),
                                 _cell(op.gradient), _code(latex_of(op)), _code(op.example), _code(op.result)]))
        syntax_forms += sum(1 for op in ops if any("(" not in f for f in op.usage))
        out.append("")
    out += ["#### Special forms (handled by the checker itself)", "",
            _row(["form", "meaning", "shape rule", "dtype", "gradient", "example", "result"]),
            "|---|---|---|---|---|---|---|"]
    for f in SPECIAL_FORM_DOCS:
        out.append(_row([_code(f.usage), _cell(f.doc), _cell(f.shape), _cell(f.dtype), _cell(f.gradient),
                         _code(f.example), _code(f.result)]))
    named = len([n for n in OPERATORS if n not in INTERNAL_OPERATORS])
    counts = (f"({named} named operators, {len(SPECIAL_FORM_DOCS)} special forms, {syntax_forms} operators written "
              "as syntax; `unrollc ops` lists the named operators and special forms.)")
    depth = ("The name `num_layers` is the network's depth (`layers N`, or `--layers`): a compile-time integer usable "
             "in shapes (`real[num_layers]`) and expressions (`onehot(layer, num_layers)`).")
    out += ["", counts, "", depth, ""]
    return "\n".join(out)


def text_list() -> str:
    """`unrollc ops`: one line per callable name (named operators and special forms)."""
    lines = []
    for name in function_names():
        op = OPERATORS.get(name)
        category, doc = ("special form", SPECIAL_FORMS[name]) if op is None else (op.category, op.doc)
        lines.append(f"{name:<12} {category:<15} {doc}")
    return "\n".join(lines) + "\n"


def replace_section(text: str) -> str:
    """`text` (docs/language.md) with the generated section between the markers replaced."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + markdown_table() + "\n" + text[end:]


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    paths = [a for a in args if a != "--check"]
    if len(paths) != 1:
        print("usage: python -m unroll.compiler.opdocs [--check] docs/language.md", file=sys.stderr)
        return 2
    path = Path(paths[0])
    text = path.read_text(encoding="utf-8")
    new = replace_section(text)
    if check:
        if new != text:
            print(f"{path}: the operator tables are out of date; run "
                  f"`python -m unroll.compiler.opdocs {path}`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        path.write_text(new, encoding="utf-8")
        print(f"{path}: operator tables regenerated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
