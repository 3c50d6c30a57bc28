"""Fuzz the compiler: generated specs (tests/specgen.py) and mutated ones (tests/fuzz_mutate.py); print a
summary and minimal failing specs.

    python benchmarks/fuzz.py --cases 100000 --seed 0             # expressions, statements and mutations in turn
    python benchmarks/fuzz.py --cases 2000 --kind statements --all-constructs   # also the known-bug constructs
    python benchmarks/fuzz.py --cases 5000 --kind mutations       # the hostile corpus, then mutants of the seeds
    python benchmarks/fuzz.py --cases 100000 --workers 2          # 2 worker processes, one thread each: same report

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


def run_case_index(i: int, args, kinds: list, banned: tuple) -> dict:
    """Case `i` of the run (its kind, seed and outcome), the same in one process or in any worker: case i is
    kind `kinds[i % len(kinds)]` with seed `args.seed + i`; a mutation case is `corpus_case(args.seed + k)` with
    k = i // len(kinds), the number of mutation cases before it."""
    kind = kinds[i % len(kinds)]
    seed = args.seed + i
    if kind == "mutations":
        label, text = corpus_case(args.seed + i // len(kinds))
        # the hostile corpus's largest cases (5 000 dims) take seconds on a busy machine: more time to compile
        outcome = run_case(text, seed, timeout=60 if label.startswith("hostile:") else 10,
                           build_timeout=args.build_timeout)
        return {"i": i, "kind": label, "seed": seed, "stage": outcome.stage, "finding": outcome.finding,
                "signature": outcome.signature, "message": outcome.message, "text": text}
    try:
        program = GENERATORS[kind](seed, banned)
        outcome = check(program, seed)
    except Exception:  # noqa: BLE001 - a bug of the generator or its numpy evaluator, not of the compiler
        return {"i": i, "kind": kind, "seed": seed, "stage": "harness", "finding": False,
                "harness": f"harness error in {kind} seed {seed}:\n{traceback.format_exc()}"}
    return {"i": i, "kind": kind, "seed": seed, "stage": outcome.stage, "finding": not outcome.ok,
            "signature": outcome.signature, "message": outcome.message, "compared": outcome.compared,
            "skipped": outcome.skipped}


def _worker_init():
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent reports; SIGTERM/^C are handled there
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_block(block: range, args, kinds: list, banned: tuple) -> list:
    return [run_case_index(i, args, kinds, banned) for i in block]


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
    parser.add_argument("--workers", type=int, default=1, metavar="W",
                        help="worker processes, one torch thread each (default 1: in this process); the cases, "
                             "seeds and report are the same for any W")
    parser.add_argument("--no-shrink", action="store_true", help="print failing specs as generated")
    parser.add_argument("--show", type=int, default=1, help="minimal specs printed per failure group")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # generated modules may warn (complex -> real casts); failures are what count
    unknown = set(args.allow) - set(KNOWN_BUG_CONSTRUCTS)
    if unknown:
        parser.error(f"--allow: not in KNOWN_BUG_CONSTRUCTS: {', '.join(sorted(unknown))}")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    banned = () if args.all_constructs else tuple(c for c in KNOWN_BUG_CONSTRUCTS if c not in args.allow)
    kinds = {"both": ["expressions", "statements"], "all": ["expressions", "statements", "mutations"]}.get(
        args.kind, [args.kind])

    results: dict[int, dict] = {}
    start = time.perf_counter()
    stop: list = []  # SIGTERM (`kill PID`) ends the run after the current case(s), with the report so far
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    seen: set = set()

    def collect(result: dict) -> None:
        results[result["i"]] = result
        if result.get("harness"):
            print(result["harness"], file=sys.stderr)
        if result["finding"] and result["signature"] not in seen:  # a long run shows each new kind as found
            seen.add(result["signature"])
            print(f"  new: {result['kind']} {result['seed']}: {result['signature']}", file=sys.stderr, flush=True)
        done = len(results)
        if done % 500 == 0:
            failing = sum(r["finding"] for r in results.values())
            print(f"  {done} cases, {failing} failing, {time.perf_counter() - start:.0f} s", file=sys.stderr,
                  flush=True)

    if args.workers == 1:
        for i in range(args.cases):
            if stop:
                break
            collect(run_case_index(i, args, kinds, banned))
    else:
        import concurrent.futures
        import multiprocessing

        size = 20  # cases per task: small enough to balance the workers, large enough to keep the pipes quiet
        blocks = [range(b, min(b + size, args.cases)) for b in range(0, args.cases, size)]
        context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker (no forked torch state)
        with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=context,
                                                    initializer=_worker_init) as pool:
            pending = set()
            todo = iter(blocks)
            for block in todo:  # at most 2 blocks per worker in flight: SIGTERM stops soon
                pending.add(pool.submit(_run_block, block, args, kinds, banned))
                if len(pending) >= 2 * args.workers:
                    break
            while pending:
                finished, pending = concurrent.futures.wait(pending, timeout=1,
                                                            return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    try:
                        block_results = future.result()
                    except Exception as err:  # noqa: BLE001 - a worker killed (by a signal, out of memory)
                        print(f"a worker failed ({type(err).__name__}: {err}); reporting the cases done",
                              file=sys.stderr)
                        stop.append(True)
                        continue
                    for result in block_results:
                        collect(result)
                    block = None if stop else next(todo, None)
                    if block is not None:
                        pending.add(pool.submit(_run_block, block, args, kinds, banned))
    elapsed = time.perf_counter() - start
    return report(args, kinds, banned, results, elapsed, stopped=bool(stop))


def report(args, kinds: list, banned: tuple, results: dict, elapsed: float, stopped: bool) -> int:
    """The summary of a run (in case order, whichever worker ran each case), failures grouped by message."""
    ordered = [results[i] for i in sorted(results)]
    ran = len(ordered)
    if stopped:
        print(f"stopped (SIGTERM) after {ran} cases", file=sys.stderr)
    stages = collections.Counter(r["stage"] for r in ordered)
    compared = sum(r.get("compared", 0) for r in ordered)
    skipped = sum(r.get("skipped", 0) for r in ordered)
    groups: dict[str, list] = collections.defaultdict(list)
    for r in ordered:
        if r["finding"]:
            groups[r["signature"]].append(r)
    first, last = (ordered[0]["i"], ordered[-1]["i"]) if ordered else (0, -1)
    contiguous = ran == last - first + 1
    seeds = f"seeds {args.seed + first}..{args.seed + last}" + ("" if contiguous else f", {ran} of them")
    print(f"{ran} cases ({', '.join(kinds)}; {seeds}) in {elapsed:.1f} s ({1000 * elapsed / max(ran, 1):.1f} "
          f"ms/case, {args.workers} worker{'s' if args.workers > 1 else ''}); banned constructs: "
          f"{', '.join(banned) or 'none'}")
    print(f"outputs compared: {compared} per-sample values; skipped (ambiguous/huge reference): {skipped}")
    print("outcomes: " + ", ".join(f"{stage} {count}" for stage, count in stages.most_common()))
    for signature, cases in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"\n=== {len(cases)} x {signature}")
        print("    seeds: " + ", ".join(r["kind"] if ":" in r["kind"] or "~" in r["kind"] else f"{r['kind'][0]}{r['seed']}"
                                     for r in cases[:12]))
        for r in cases[:args.show]:
            if "text" in r:  # a mutation case: its label, and the spec as run
                print(f"--- {r['kind']}:")
                print(r["text"].rstrip()[:3000])
                print("--- " + r["message"].strip().splitlines()[0][:300] if r["message"].strip() else "---")
                continue
            kind, seed = r["kind"], r["seed"]
            program = GENERATORS[kind](seed, banned)
            small = program if args.no_shrink else shrink(program, seed, check(program, seed))
            print(f"--- {kind} seed {seed}, {'as generated' if args.no_shrink else 'shrunk'}:")
            print(small.render().rstrip())
            print("--- " + check(small, seed).message.strip().splitlines()[0][:300])
    return 1 if groups else 0


if __name__ == "__main__":
    sys.exit(main())
