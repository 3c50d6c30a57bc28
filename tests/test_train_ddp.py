"""The trainer under DistributedDataParallel: 2 processes, gloo on localhost, 1 thread each, a few steps.

Each replica draws its own training batches (different data per rank), so the replicas stay equal only
if DDP all-reduces the gradients, which it does only for losses computed through its own forward;
deep supervision is routed through it (NetForward's trace mode).  After training the replicas'
parameters must agree bit for bit."""

import os
import socket

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir):
    import torch
    import torch.distributed as dist
    import unroll

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        T = unroll.train
        task = T.sparse_coding(n=12, m=24, validation=32, test=32, seed=1)
        saved = {"first_batch": next(task.batches(8, 0, rank, world))[0]["y"]}
        for protocol in ("deep", "stagewise"):
            net = T.build_net("lista_cp", task, layers=3)
            config = T.TrainConfig(protocol=protocol, epochs=2, steps_per_epoch=3, batch_size=8, lr=1e-2,
                                   refine=(0.5,) if protocol == "stagewise" else ())
            T.Trainer(net, task, config, progress=False).fit()
            saved[protocol] = net.state_dict()
        torch.save(saved, os.path.join(out_dir, f"rank{rank}.pt"))
        # a clean shutdown: both replicas reach this point before either tears the process group down (once, on
        # a loaded machine, the replica that left first made the other abort in gloo: "terminate called without
        # an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_replicas_agree_bit_for_bit(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert not torch.equal(r0["first_batch"], r1["first_batch"])  # each replica trains on its own data
    start = __import__("unroll").train.build_net("lista_cp", __import__("unroll").train.sparse_coding(
        n=12, m=24, validation=32, test=32, seed=1), layers=3).state_dict()
    for protocol in ("deep", "stagewise"):  # deep supervision through the trace mode; stage-wise freezing
        for key, value in r0[protocol].items():
            assert torch.equal(value, r1[protocol][key]), (protocol, key)
        assert not torch.equal(r0[protocol]["We"], start["We"])  # and it trained


def test_unrollc_train_under_torchrun_two_replicas(tmp_path):
    # the command line under torchrun (2 processes, gloo): rank 0 writes the run directory, both replicas end
    # together (barrier, then the process group is destroyed) and exit 0; the checkpoint is the trained network
    import subprocess
    import sys

    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "unroll.compiler.cli", "train", "lista_cp", "--task", "sparse_coding_small", "--layers", "2",
         "--epochs", "1", "--steps-per-epoch", "3", "--refine", "", "-o", str(out), "--no-progress"],
        check=False, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("untrained = classical") == 1  # the table comes from rank 0 only
    for name in ("final.pt", "log.jsonl", "summary.json", "layers.png"):
        assert (out / name).stat().st_size > 0, name
    assert "terminate called" not in proc.stderr
