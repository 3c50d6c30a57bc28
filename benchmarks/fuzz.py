"""Fuzz the compiler with generated specs (tests/specgen.py); print a summary and minimal failing specs.

    python benchmarks/fuzz.py --cases 100000 --seed 0             # expression specs + statement specs
    python benchmarks/fuzz.py --cases 2000 --kind statements --all-constructs   # also the known-bug constructs

A case is one generated spec: compiled, built on random data of the declared shapes, run batched
(batch 3) and unbatched, compared with the spec's numpy meaning, and run backward.  Failures are
grouped by stage and message (numbers and generated names removed); each group's first case is
shrunk to a small spec that fails the same way.  By default the generators avoid the constructs
in specgen.KNOWN_BUG_CONSTRUCTS (bugs already reported); --all-constructs lifts that.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import torch
from specgen import KNOWN_BUG_CONSTRUCTS, expression_program, statement_program
from specgen_check import check, shrink

GENERATORS = {"expressions": expression_program, "statements": statement_program}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="number of generated specs (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; case i uses seed + i")
    parser.add_argument("--kind", choices=["expressions", "statements", "both"], default="both")
    parser.add_argument("--all-constructs", action="store_true",
                        help="also generate the constructs of KNOWN_BUG_CONSTRUCTS")
    parser.add_argument("--allow", action="append", default=[], metavar="CONSTRUCT",
                        help="generate this construct of KNOWN_BUG_CONSTRUCTS (repeatable)")
    parser.add_argument("--no-shrink", action="store_true", help="print failing specs as generated")
    parser.add_argument("--show", type=int, default=1, help="minimal specs printed per failure group")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # generated modules may warn (complex -> real casts); failures are what count
    unknown = set(args.allow) - set(KNOWN_BUG_CONSTRUCTS)
    if unknown:
        parser.error(f"--allow: not in KNOWN_BUG_CONSTRUCTS: {', '.join(sorted(unknown))}")
    banned = () if args.all_constructs else tuple(c for c in KNOWN_BUG_CONSTRUCTS if c not in args.allow)
    kinds = ["expressions", "statements"] if args.kind == "both" else [args.kind]

    groups: dict[str, list] = collections.defaultdict(list)
    stages = collections.Counter()
    compared = skipped = 0
    start = time.perf_counter()
    for i in range(args.cases):
        kind = kinds[i % len(kinds)]
        seed = args.seed + i
        try:
            program = GENERATORS[kind](seed, banned)
            outcome = check(program, seed)
        except Exception:  # noqa: BLE001 - a bug of the generator or its numpy evaluator, not of the compiler
            print(f"harness error in {kind} seed {seed}:\n{traceback.format_exc()}", file=sys.stderr)
            stages["harness"] += 1
            continue
        stages[outcome.stage] += 1
        compared += outcome.compared
        skipped += outcome.skipped
        if not outcome.ok:
            groups[outcome.signature].append((kind, seed, program, outcome))
        if (i + 1) % 500 == 0:
            print(f"  {i + 1} cases, {sum(len(g) for g in groups.values())} failing, "
                  f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    elapsed = time.perf_counter() - start

    print(f"{args.cases} cases ({', '.join(kinds)}; seeds {args.seed}..{args.seed + args.cases - 1}) in "
          f"{elapsed:.1f} s ({1000 * elapsed / max(args.cases, 1):.1f} ms/case); banned constructs: "
          f"{', '.join(banned) or 'none'}")
    print(f"outputs compared: {compared} per-sample values; skipped (ambiguous/huge reference): {skipped}")
    print("outcomes: " + ", ".join(f"{stage} {count}" for stage, count in stages.most_common()))
    for signature, cases in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"\n=== {len(cases)} x {signature}")
        print("    seeds: " + ", ".join(f"{kind[0]}{seed}" for kind, seed, _, _ in cases[:12]))
        for kind, seed, program, outcome in cases[:args.show]:
            small = program if args.no_shrink else shrink(program, seed, outcome)
            print(f"--- {kind} seed {seed}, {'as generated' if args.no_shrink else 'shrunk'}:")
            print(small.render().rstrip())
            print("--- " + check(small, seed).message.strip().splitlines()[0][:300])
    return 1 if groups else 0


if __name__ == "__main__":
    sys.exit(main())
