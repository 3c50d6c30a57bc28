"""Fuzz the compiler: generated specs (tests/specgen.py) and mutated ones (tests/fuzz_mutate.py); print a
summary and minimal failing specs.

    python benchmarks/fuzz.py --cases 100000 --seed 0             # expressions, statements and mutations in turn
    python benchmarks/fuzz.py --cases 2000 --kind statements --all-constructs   # also the known-bug constructs
    python benchmarks/fuzz.py --cases 5000 --kind mutations       # the hostile corpus, then mutants of the seeds

A generated case (expressions, statements) is one well-typed spec: compiled, built on random data of the
declared shapes, run batched (batch 3) and unbatched, compared with the spec's numpy meaning, and run
backward.  A mutation case is the hostile corpus (tests/fuzz_mutate.py HOSTILE, first) or a shipped spec
or manual example with 1-3 token mutations: compiling must give the module or a located diagnostic (never
another exception or a hang), and an accepted spec must build on random data and run, or refuse with a
TypeError/ValueError naming the argument.  Failures are grouped by stage and message (numbers and
generated names removed); each group's first generated case is shrunk to a small spec that fails the same
way.  By default the generators avoid the constructs in specgen.KNOWN_BUG_CONSTRUCTS (bugs already
reported); --all-constructs lifts that.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import sys
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import torch
from fuzz_mutate import corpus_case, run_case
from specgen import KNOWN_BUG_CONSTRUCTS, expression_program, statement_program
from specgen_check import check, shrink

GENERATORS = {"expressions": expression_program, "statements": statement_program}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="number of generated specs (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; case i uses seed + i")
    parser.add_argument("--kind", choices=["expressions", "statements", "both", "mutations", "all"], default="all",
                        help="both: expressions and statements; all (default): also mutations")
    parser.add_argument("--all-constructs", action="store_true",
                        help="also generate the constructs of KNOWN_BUG_CONSTRUCTS")
    parser.add_argument("--allow", action="append", default=[], metavar="CONSTRUCT",
                        help="generate this construct of KNOWN_BUG_CONSTRUCTS (repeatable)")
    parser.add_argument("--build-timeout", type=int, default=10, metavar="S",
                        help="mutation cases: seconds to build and run an accepted module (longer: counted as slow)")
    parser.add_argument("--no-shrink", action="store_true", help="print failing specs as generated")
    parser.add_argument("--show", type=int, default=1, help="minimal specs printed per failure group")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # generated modules may warn (complex -> real casts); failures are what count
    unknown = set(args.allow) - set(KNOWN_BUG_CONSTRUCTS)
    if unknown:
        parser.error(f"--allow: not in KNOWN_BUG_CONSTRUCTS: {', '.join(sorted(unknown))}")
    banned = () if args.all_constructs else tuple(c for c in KNOWN_BUG_CONSTRUCTS if c not in args.allow)
    kinds = {"both": ["expressions", "statements"], "all": ["expressions", "statements", "mutations"]}.get(
        args.kind, [args.kind])
    mutations = 0  # mutation cases so far: case k of the mutation fuzzer is corpus_case(seed + k)

    groups: dict[str, list] = collections.defaultdict(list)
    stages = collections.Counter()
    compared = skipped = 0
    start = time.perf_counter()
    stop: list = []  # SIGTERM (`kill PID`) ends the run after the current case, with the report so far
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    ran = 0
    for i in range(args.cases):
        if stop:
            print(f"stopped (SIGTERM) after {ran} cases", file=sys.stderr)
            break
        ran = i + 1
        if i and i % 500 == 0:
            print(f"  {i} cases, {sum(len(g) for g in groups.values())} failing, "
                  f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        kind = kinds[i % len(kinds)]
        seed = args.seed + i
        if kind == "mutations":
            label, text = corpus_case(args.seed + mutations)
            mutations += 1
            # the hostile corpus's largest cases (5 000 dims) take seconds on a busy machine: more time to compile
            outcome = run_case(text, seed, timeout=60 if label.startswith("hostile:") else 10,
                               build_timeout=args.build_timeout)
            stages[outcome.stage] += 1
            if outcome.finding:
                if outcome.signature not in groups:  # a long run shows each new kind of failure as it is found
                    print(f"  new: {label}: {outcome.signature}", file=sys.stderr, flush=True)
                groups[outcome.signature].append((label, seed, text, outcome))
            continue
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
    elapsed = time.perf_counter() - start

    print(f"{ran} cases ({', '.join(kinds)}; seeds {args.seed}..{args.seed + ran - 1}) in "
          f"{elapsed:.1f} s ({1000 * elapsed / max(ran, 1):.1f} ms/case); banned constructs: "
          f"{', '.join(banned) or 'none'}")
    print(f"outputs compared: {compared} per-sample values; skipped (ambiguous/huge reference): {skipped}")
    print("outcomes: " + ", ".join(f"{stage} {count}" for stage, count in stages.most_common()))
    for signature, cases in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"\n=== {len(cases)} x {signature}")
        print("    seeds: " + ", ".join(kind if ":" in kind or "~" in kind else f"{kind[0]}{seed}"
                                     for kind, seed, _, _ in cases[:12]))
        for kind, seed, program, outcome in cases[:args.show]:
            if isinstance(program, str):  # a mutation case: its label, and the spec as run
                print(f"--- {kind}:")
                print(program.rstrip()[:3000])
                print("--- " + outcome.message.strip().splitlines()[0][:300])
                continue
            small = program if args.no_shrink else shrink(program, seed, outcome)
            print(f"--- {kind} seed {seed}, {'as generated' if args.no_shrink else 'shrunk'}:")
            print(small.render().rstrip())
            print("--- " + check(small, seed).message.strip().splitlines()[0][:300])
    return 1 if groups else 0


if __name__ == "__main__":
    sys.exit(main())
