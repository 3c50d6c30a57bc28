"""`unrollc train`: the command line of the trainer (unroll.train).  Only the argument parser lives
here (the compiler never imports torch); the run is unroll.train.cli.run."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a spec on a catalog task; write checkpoint, log and plots",
                       description="Compile SPEC, train it on a synthetic catalog task (or resume a run) and write "
                                   "checkpoints (best.pt, final.pt, last.pt), log.jsonl, summary.json and plots "
                                   "(layers.png: trained vs classical per layer, curves.png, parameters.png) to DIR.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("spec", metavar="SPEC", help="a .unroll file or a shipped spec name")
    t.add_argument("--task", metavar="NAME",
                   help="sparse_coding, sparse_coding_snr40, sparse_coding_small, compressive_mri, blind_deblur, "
                        "nmf_separation; default: the shipped spec's own catalog task (the one `unrollc demo` "
                        "runs), with its depth unless --layers is given")
    t.add_argument("-o", "--output", required=True, metavar="DIR", help="run directory")
    t.add_argument("--layers", type=int, metavar="N", help="number of layers (overrides the spec's `layers`)")
    t.add_argument("--learn", action="append", metavar="P,..", help="make these parameters trainable")
    t.add_argument("--freeze", action="append", metavar="P,..", help="keep these parameters fixed")
    t.add_argument("--tie", action="append", metavar="P,..", help="share these parameters across layers")
    t.add_argument("--untie", action="append", metavar="P,..", help="one value per layer for these parameters")
    t.add_argument("--protocol", choices=("e2e", "stagewise", "deep"), default="e2e",
                   help="end to end, stage-wise (layer by layer, LISTA-CP reference), or deep supervision")
    t.add_argument("--layer-weights", default="uniform", metavar="W",
                   help="deep supervision weights: uniform, linear, log, last")
    t.add_argument("--epochs", type=int, default=20, metavar="E", help="epochs per stage at most")
    t.add_argument("--steps-per-epoch", type=int, default=100, metavar="S")
    t.add_argument("--batch-size", default="64", metavar="B[,B1,..]",
                   help="samples a step; or one per stage of a group (the stage at --lr, then each refinement)")
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--layer-lr", metavar="R1,..,RL",
                   help="per-layer learning-rate multipliers (one per layer), or per parameter: NAME=R,.. "
                        "(e.g. theta=10; the parameters not named use 1)")
    t.add_argument("--stage-init", choices=("default", "previous"), default="default",
                   help="stage-wise: layer k starts at the spec's defaults, or as a copy of the trained layer k-1")
    t.add_argument("--refine", default="0.2,0.02", metavar="F,..",
                   help="refinement learning-rate factors ('' for none)")
    t.add_argument("--refine-decay", type=float, default=1.0, metavar="D",
                   help="stage-wise: refining layers 1..k, layer l learns at D^(k-l) of the rate (reference code: 0.3)")
    t.add_argument("--refine-window", type=int, metavar="W",
                   help="stage-wise: refine only the last W layers k-W+1..k (the older ones stay frozen: the backward "
                        "pass stops at layer k-W+1)")
    t.add_argument("--patience", type=int, default=5, metavar="P", help="epochs without improvement per stage")
    t.add_argument("--max-cpu-seconds", type=float, metavar="T", help="stop after this much CPU time")
    t.add_argument("--budget-shares", metavar="S0,S1,..",
                   help="with --max-cpu-seconds: each stage's share of it (the stage at --lr, then each "
                        "refinement; stage-wise, layer k's stages get a part proportional to k), e.g. 0.6,0.25,0.15")
    t.add_argument("--budget-rollover", choices=("next", "spread"), default="next",
                   help="with --budget-shares: where a stage that stops early leaves its unused time (next: the "
                        "next stage; spread: all later stages, in proportion to their shares)")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    t.add_argument("--device", default="cpu")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint (DIR/last.pt)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")


def cmd_train(args) -> int:
    from unroll.train.cli import run  # imports torch: only this command needs it

    return run(args)
