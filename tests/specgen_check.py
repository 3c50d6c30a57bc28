"""Compile a generated Program, run the module, compare with the program's numpy meaning; shrink failures.

Public API only: `unroll.compiler.compile_source` and exec of the generated source into a fresh
module namespace (as tests/test_emitter.py does).  `check(program, seed)` returns an `Outcome`:
ok, or the stage that failed (rejected, import, construct, forward, shape, dtype, value, unbatched,
backward) with a message; `shrink(program, seed, outcome)` deletes statements and outputs and
replaces sub-expressions by leaves while the failure keeps its signature.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import re
import types
from dataclasses import dataclass

import numpy as np
import torch
from specgen_exprs import AMBIGUOUS, Expr, size
from specgen_program import Decl, Program, Stmt
from unroll.compiler import CompileError, compile_source
from unroll.runtime import UnrolledModule

BATCH = 3
RTOL = 1e-8
HUGE = 1e10  # reference values beyond this are not compared (rounding of chained products)
NUMBER = re.compile(r"-?[0-9]+(\.[0-9]*)?(e[+-]?[0-9]+)?")


@dataclass
class Outcome:
    stage: str = "ok"  # ok, rejected, import, construct, forward, shape, dtype, value, unbatched, backward
    message: str = ""
    compared: int = 0  # outputs compared (per sample)
    skipped: int = 0  # outputs skipped (ambiguous or huge reference)

    @property
    def ok(self) -> bool:
        return self.stage == "ok"

    @property
    def signature(self) -> str:
        """What identifies a failure across shrinking: the stage and the message without numbers/names."""
        lines = self.message.strip().splitlines() or [""]
        first = next((line for line in lines if "error:" in line), lines[0])
        first = re.sub(r"^.*?error: ", "", first)
        first = re.sub(r"\b[A-Za-z]+\d+\b", "NAME", first)  # generated names: A12, y3, ...
        return f"{self.stage}: {NUMBER.sub('#', first)[:160]}"


def build_class(text: str, name: str = "gen"):
    """Compile spec text and exec the module; returns the generated class."""
    src = compile_source(text, f"{name}.unroll")
    module = types.ModuleType(f"unroll_fuzz_{name}")
    exec(compile(src, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - importing compiler output
    classes = [v for v in vars(module).values()
               if isinstance(v, type) and issubclass(v, UnrolledModule) and v is not UnrolledModule]
    assert len(classes) == 1
    return classes[0]


def _torch(x, requires_grad=False):
    t = torch.tensor(x, dtype=torch.complex128 if np.iscomplexobj(x) else torch.float64)
    return t.requires_grad_(requires_grad)


def check(prog: Program, seed: int = 0, backward: bool = True, minimal: bool = True) -> Outcome:
    text = prog.render(minimal)
    try:
        cls = build_class(text, prog.name)
    except CompileError as err:
        return Outcome("rejected", str(err))
    except Exception as err:  # noqa: BLE001 - any failure to import the output is a compiler bug
        return Outcome("import", f"{type(err).__name__}: {err}")
    data, inputs, dims = prog.values(seed, BATCH)
    if "dtype" in inspect.signature(cls.__init__).parameters:  # no data tensor: the module's dtype
        dims = dict(dims, dtype=torch.float64)
    try:
        net = cls(**data, **dims)
    except Exception as err:  # noqa: BLE001
        return Outcome("construct", f"{type(err).__name__}: {err}")
    batch_in = {k: _torch(v, requires_grad=backward) for k, v in inputs.items()}
    try:
        outs = net(**batch_in)
    except Exception as err:  # noqa: BLE001
        if isinstance(err, ValueError) and "the iteration diverged" in str(err) \
                and _reference_diverges(prog, data, inputs):
            outcome = Outcome()  # the runtime's named refusal of non-finite values that numpy computes too
            outcome.skipped += 1
            return outcome
        return Outcome("forward", f"{type(err).__name__}: {err}")
    outs = outs if isinstance(outs, tuple) else (outs,)
    batched = prog.batched_names()
    outcome = Outcome()
    refs = []
    for b in range(BATCH):
        refs.append(prog.reference(data, {k: v[b] for k, v in inputs.items()}))
        for name, out, ref in zip(prog.outputs, outs, refs[-1]):
            if name in batched and (not torch.is_tensor(out) or out.ndim == 0 or out.shape[0] != BATCH):
                shape = list(out.shape) if torch.is_tensor(out) else type(out).__name__
                return Outcome("shape", f"output `{name}` has shape {shape}, expected a batch of {BATCH} "
                               f"[{BATCH}, {', '.join(map(str, size(prog_shape(prog, name))))}]")
            problem = _compare(name, out[b] if name in batched else out, ref, outcome, name in batched)
            if problem:
                return problem
    try:
        single = net(**{k: v[0].detach() for k, v in batch_in.items()})
    except Exception as err:  # noqa: BLE001
        return Outcome("unbatched", f"{type(err).__name__}: {err}")
    single = single if isinstance(single, tuple) else (single,)
    for name, out, ref in zip(prog.outputs, single, refs[0]):
        problem = _compare(name, out, ref, Outcome(), False, stage="unbatched")
        if problem:
            return problem
    if backward:
        loss = sum(o.real.sum() for o in outs if o.requires_grad)
        if torch.is_tensor(loss):
            try:
                loss.backward()
            except Exception as err:  # noqa: BLE001
                return Outcome("backward", f"{type(err).__name__}: {err}")
    return outcome


def _reference_diverges(prog: Program, data, inputs) -> bool:
    """Whether numpy's reference of some sample is not finite, has no defined value or fails on non-finite
    values: then a runtime operator that refuses NaN/inf (`svt`: "the iteration diverged") is right to."""
    for b in range(BATCH):
        try:
            with np.errstate(all="ignore"):
                refs = prog.reference(data, {k: v[b] for k, v in inputs.items()})
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            return True
        if any(r is AMBIGUOUS or not np.all(np.isfinite(np.asarray(r))) for r in refs):
            return True  # (numpy's svd of a non-finite matrix gives the reference no defined value: AMBIGUOUS)
    return False


def prog_shape(prog: Program, name: str) -> tuple:
    decl = prog.pool.decls.get(name)
    return decl.ty.shape if decl is not None else prog.pool.local_types[name].shape


def _compare(name, out, ref, outcome: Outcome, batched: bool, stage: str | None = None) -> Outcome | None:
    if ref is AMBIGUOUS:
        outcome.skipped += 1
        return None
    ref = np.asarray(ref)
    if not torch.is_tensor(out):
        return Outcome(stage or "dtype", f"output `{name}` is {type(out).__name__}, not a tensor")
    want = tuple(size(ref.shape)) if ref.ndim else ()
    if tuple(out.shape) != want:
        return Outcome(stage or "shape", f"output `{name}` has shape {list(out.shape)}, expected {list(want)}"
                       f"{' per sample' if batched else ''}")
    if out.is_complex() != np.iscomplexobj(ref) or out.dtype not in (torch.float64, torch.complex128):
        kind = "complex" if np.iscomplexobj(ref) else "real"
        return Outcome(stage or "dtype", f"output `{name}` has dtype {out.dtype}, expected {kind} float64")
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    if not np.all(np.isfinite(ref)) or scale > HUGE:
        outcome.skipped += 1
        return None
    err = float(np.max(np.abs(out.detach().resolve_conj().resolve_neg().numpy() - ref))) if ref.size else 0.0
    if not err <= RTOL * (1 + scale):
        return Outcome(stage or "value", f"output `{name}` differs from the reference by {err:.3g} "
                       f"(scale {scale:.3g})")
    outcome.compared += 1
    return None


# ------------------------------------------------------------------------------------------- shrinking
def shrink(prog: Program, seed: int, outcome: Outcome, budget: int = 400) -> Program:
    """A smaller program that fails with the same signature (greedy: delete, then simplify)."""
    target = outcome.signature
    tries = [0]

    def fails(candidate: Program) -> bool:
        tries[0] += 1
        try:
            return check(candidate, seed).signature == target
        except Exception:  # noqa: BLE001 - a candidate the generator's own evaluator cannot handle
            return False

    best = copy.deepcopy(prog)
    changed = True
    while changed and tries[0] < budget:
        changed = False
        for candidate in _deletions(best):
            if tries[0] >= budget:
                break
            if fails(candidate):
                best, changed = candidate, True
                break
        if changed:
            continue
        for candidate in _simplifications(best):
            if tries[0] >= budget:
                break
            if fails(candidate):
                best, changed = candidate, True
                break
    return best


def _deletions(prog: Program):
    for i in range(len(prog.outputs)):
        if len(prog.outputs) > 1:
            p = copy.deepcopy(prog)
            del p.outputs[i]
            yield p
    for block in ("step", "final"):
        for path in _paths(getattr(prog, block)):
            p = copy.deepcopy(prog)
            stmts = getattr(p, block)
            *outer, last = path
            for i in outer:
                stmts = stmts[i].body
            removed = stmts.pop(last)
            if removed.kind == "repeat":  # unwrap the repeat
                stmts[last:last] = removed.body
            if p.step and all(_nonempty(s) for s in p.step + p.final):
                yield p
    if prog.layers > 1:
        p = copy.deepcopy(prog)
        p.layers = 1
        yield p


def _nonempty(s: Stmt) -> bool:
    return s.kind != "repeat" or (bool(s.body) and all(_nonempty(x) for x in s.body))


def _paths(stmts, prefix=()):
    for i, s in enumerate(stmts):
        yield prefix + (i,)
        if s.kind == "repeat":
            yield from _paths(s.body, prefix + (i,))


def _simplifications(prog: Program):
    """Replace one sub-expression (of a statement or a declaration) by one of its operands of the same
    type, or by a fresh data/input leaf of that type."""
    for block in ("step", "final"):
        for path in _paths(getattr(prog, block)):
            stmt = _stmt_at(prog, block, path)
            if stmt.kind == "repeat":
                continue
            for new in _smaller(stmt.expr, prog):
                p = copy.deepcopy(prog)
                _stmt_at(p, block, path).expr = new
                yield p
    for name, d in list(prog.pool.decls.items()):
        if d.init is not None and d.kind in ("let", "state", "param") and name in {x.name for x in prog.used_decls()}:
            for new in _smaller(d.init, prog):
                p = copy.deepcopy(prog)
                p.pool.decls[name].init = new
                yield p


def _stmt_at(prog: Program, block: str, path) -> Stmt:
    stmts = getattr(prog, block)
    for i in path[:-1]:
        stmts = stmts[i].body
    return stmts[path[-1]]


def _smaller(e: Expr, prog: Program):
    """Variants of `e` with one node replaced by a same-typed operand or a fresh leaf."""
    nodes = list(e.walk())
    for node in nodes:
        if node.op in ("leaf", "num", "layer", "prev"):
            continue
        for child in node.args:
            if child.ty.shape == node.ty.shape and _same_kind(child, node):
                yield _replace(e, node, child)
        leaf = _fresh_leaf(prog, node)
        if leaf is not None:
            yield _replace(e, node, leaf)


def _same_kind(a: Expr, b: Expr) -> bool:
    return (a.ty.dtype == "complex") == (b.ty.dtype == "complex") and a.ty.dtype != "bool" and a.py == b.py


def _fresh_leaf(prog: Program, node: Expr) -> Expr | None:
    if node.py or node.ty.dtype not in ("real", "complex"):
        return None
    pool = prog.pool
    kind = "input" if node.ty.batched else "data"
    name = pool.fresh("v")
    ty = dataclasses.replace(node.ty, batched=node.ty.batched)
    pool.decls[name] = Decl(name, kind, ty, 1 if kind == "input" else 0)
    return Expr("leaf", ty, static=(name,), level=1 if kind == "input" else 0)


def _replace(root: Expr, old: Expr, new: Expr) -> Expr:
    if root is old:
        return new
    if not root.args:
        return root
    args = tuple(_replace(a, old, new) for a in root.args)
    return root if all(a is b for a, b in zip(args, root.args)) else dataclasses.replace(root, args=args)
