"""unrollc: the command-line driver.  Never shows a Python traceback for a
mistake in a spec or in the options: diagnostics go to stderr, exit status 1."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_train import add_parser as add_train_parser
from .cli_train import cmd_train
from .diagnostics import CompileError
from .driver import VERSION, check_source, compile_spec, make_options, read_spec, resolve_spec, shipped_specs


def _add_schedule(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layers", type=int, metavar="N", help="number of layers (overrides the spec's `layers`)")
    p.add_argument("--tie", action="append", metavar="P,..", help="share these parameters across layers")
    p.add_argument("--untie", action="append", metavar="P,..", help="give these parameters one value per layer")
    p.add_argument("--learn", action="append", metavar="P,..", help="make these parameters trainable")
    p.add_argument("--freeze", action="append", metavar="P,..", help="keep these parameters fixed (buffers)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unrollc", description="Compile .unroll specs of iterative algorithms into "
                                "trainable PyTorch modules (one layer per iteration).")
    p.add_argument("--version", action="version", version=f"unrollc {VERSION}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("compile", help="compile a spec to a Python module",
                       description="Compile SPEC (a path or a shipped spec name) to a PyTorch module.")
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("-o", "--output", metavar="OUT.py", help="output file (default: <spec>_net.py; `-` for stdout)")
    c.add_argument("--class-name", metavar="NAME", help="name of the generated class")
    c.add_argument("--backward", metavar="MODE", help="how the layers are differentiated: unroll (default), "
                   "checkpoint[:K] (recompute segments of K layers), implicit[:TOL] (fixed point, shared parameters)")
    _add_schedule(c)

    k = sub.add_parser("check", help="report diagnostics only (exit 0 if the spec is valid)",
                       description="Parse and check SPEC; print diagnostics; exit 0 if valid, 1 otherwise.")
    k.add_argument("spec", metavar="SPEC")
    _add_schedule(k)

    sub.add_parser("list", help="list the shipped specs", description="List the shipped specs, one per line: "
                   "id, catalog family (A-K), title.")

    e = sub.add_parser("explain", help="show the equations, the parameter table and the execution plan",
                       description="Show what a spec computes: equations (text and LaTeX), parameters, and which "
                                   "values are constants, hoisted out of the loop, or per layer.")
    e.add_argument("spec", metavar="SPEC")
    e.add_argument("--latex", action="store_true", help="print the update equations as LaTeX only")
    _add_schedule(e)

    g = sub.add_parser("graph", help="print the dataflow graph as Graphviz DOT",
                       description="Print the dataflow graph of SPEC in Graphviz DOT (colour = level).")
    g.add_argument("spec", metavar="SPEC")
    _add_schedule(g)

    w = sub.add_parser("draw", help="draw the unrolled network (SVG or PNG)",
                       description="Draw SPEC as the review's figures do: layers as repeated blocks, parameters "
                                   "per layer or shared, fixed data and operators, sub-networks, the final stage.")
    w.add_argument("spec", metavar="SPEC")
    w.add_argument("-o", "--output", metavar="FILE.svg|png", help="output file (default: <spec>.svg)")
    _add_schedule(w)

    d = sub.add_parser("demo", help="run a shipped spec on its catalog task, untrained (= classical) and trained",
                       description="Compile the shipped spec SPEC, build it on its catalog task (a small synthetic "
                                   "problem of the kind the review uses it on), run the untrained network (= the "
                                   "classical algorithm), train it briefly if it has trainable parameters (with a "
                                   "progress bar), and print the held-out quality layer by layer.")
    d.add_argument("spec", metavar="SPEC")
    d.add_argument("--layers", type=int, default=None, metavar="N", help="number of layers (default: the task's)")
    d.add_argument("--steps", type=int, default=None, metavar="K", help="training steps (default: the task's)")
    d.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the synthetic data (default 0)")

    x = sub.add_parser("export", help="export a network built from data or a checkpoint to ONNX or torch.export",
                       description="Build SPEC's network from its data (--data file.npz: constructor arguments "
                                   "by spec name, and optionally an example batch of each input) or a pickled "
                                   "network (--checkpoint), and export it (docs/deployment.md).")
    x.add_argument("spec", metavar="SPEC")
    x.add_argument("--format", choices=("onnx", "pt2"), default="onnx", help="onnx (default) or pt2 (torch.export)")
    x.add_argument("-o", "--output", metavar="FILE", help="output file (default: <spec>.onnx or <spec>.pt2)")
    x.add_argument("--data", metavar="FILE.npz", help="constructor arguments (and example inputs) by spec name")
    x.add_argument("--checkpoint", metavar="NET.pt", help="a whole network saved with torch.save(net)")
    x.add_argument("--state-dict", metavar="SD.pt", help="trained weights to load (net.state_dict())")
    x.add_argument("--dtype", choices=("float32", "float64"), help="convert the network before exporting")
    x.add_argument("--legacy", action="store_true", help="ONNX: the TorchScript-based exporter, not dynamo")
    _add_schedule(x)
    add_train_parser(sub)

    o = sub.add_parser("ops", help="list the operators of the language", description="List every operator.")
    o.add_argument("--markdown", action="store_true",
                   help="the operator tables of docs/language.md (generated from the registry)")
    return p


def _options(args):
    return make_options(layers=args.layers, tie=args.tie, untie=args.untie, learn=args.learn, freeze=args.freeze,
                        class_name=getattr(args, "class_name", None), backward=getattr(args, "backward", None))


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except CompileError as err:
        print(err.report(), file=sys.stderr)
        return 1
    except OSError as err:
        print(f"unrollc: error: {err}", file=sys.stderr)
        return 1


def cmd_compile(args) -> int:
    options = _options(args)
    source, path = compile_spec(args.spec, options)
    out = args.output or f"{path.stem}_net.py"
    if out == "-":
        sys.stdout.write(source)
    else:
        Path(out).write_text(source)
        print(f"unrollc: wrote {out} ({path.stem}: {source.count(chr(10))} lines)", file=sys.stderr)
    return 0


def cmd_check(args) -> int:
    path = resolve_spec(args.spec)
    program = check_source(read_spec(path), str(path), _options(args))
    print(f"{path}: ok ({program.name}: {len(program.params)} parameters, {len(program.states)} states, "
          f"{program.layers_dim or program.layers} layers)")
    return 0


def cmd_list(args) -> int:
    from .catalog import family_of

    for name, path in shipped_specs().items():
        title = ""
        for line in path.read_text().split("\n"):
            if line.startswith("spec "):
                title = line.split('"')[1] if '"' in line else ""
                break
        print(f"{name:<22} {family_of(name) or '-'}  {title}")  # the catalog family, A-K (compiler/catalog.py)
    return 0


def cmd_explain(args) -> int:
    from .explain import explain

    path = resolve_spec(args.spec)
    program = check_source(read_spec(path), str(path), _options(args))
    print(explain(program, latex_only=args.latex))
    return 0


def cmd_graph(args) -> int:
    from .graph import build_graph, to_dot

    path = resolve_spec(args.spec)
    program = check_source(read_spec(path), str(path), _options(args))
    sys.stdout.write(to_dot(build_graph(program)))
    return 0


def cmd_draw(args) -> int:
    from .draw import draw
    from .planner import plan

    path = resolve_spec(args.spec)
    out = args.output or f"{path.stem}.svg"
    if not out.endswith((".svg", ".png")):
        print(f"unrollc: error: draw writes .svg or .png files, not `{out}`", file=sys.stderr)
        return 1
    program = check_source(path.read_text(), str(path), _options(args))
    draw(plan(program), out)
    print(f"unrollc: wrote {out}", file=sys.stderr)
    return 0


def cmd_ops(args) -> int:
    from .opdocs import markdown_table, text_list

    sys.stdout.write(markdown_table() if args.markdown else text_list())
    return 0


def cmd_export(args) -> int:
    from unroll.runtime.export_cli import run  # imports torch: only this command needs it

    return run(args, {"layers": args.layers, "tie": args.tie, "untie": args.untie, "learn": args.learn,
                      "freeze": args.freeze})


def cmd_demo(args) -> int:
    from unroll.runtime.demo import run  # imports torch: only this command needs it

    if args.spec not in shipped_specs():
        sys.stderr.write(f"unrollc demo: `{args.spec}` is not a shipped spec (see `unrollc list`); the demo runs "
                         "a shipped spec on its catalog task\n")
        return 2
    run(args.spec, layers=args.layers, steps=args.steps, seed=args.seed)
    return 0


COMMANDS = {"demo": cmd_demo, "compile": cmd_compile, "check": cmd_check, "list": cmd_list, "explain": cmd_explain,
            "graph": cmd_graph, "ops": cmd_ops, "export": cmd_export, "draw": cmd_draw, "train": cmd_train}


if __name__ == "__main__":
    sys.exit(main())
