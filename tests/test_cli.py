"""The `unrollc` command line (compiler/cli.py): every subcommand, --help and --version,
exit codes (0 ok, 1 on errors) and error output (`path:line:col: error:`, no traceback)."""

from __future__ import annotations

import ast as pyast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from unroll.compiler.cli import COMMANDS, main
from unroll.compiler.driver import SPEC_DIR, VERSION, compile_source, make_options, shipped_specs
from unroll.compiler.operators import function_names

SHIPPED = shipped_specs()
SUBCOMMANDS = sorted(COMMANDS)

BAD_SPEC = """spec bad "bad"
dims n
input y : real[n]
state x : real[n] = 0
layers 2
step:
    x = x + * y
output x
"""

BAD_NAME = """spec bad "bad"
dims n
input y : real[n]
state x : real[n] = 0
layers 2
step:
    x = x + yy
output x
"""


def run_main(capsys, *argv):
    """main(argv) -> (exit status, stdout, stderr), as a process would see them:
    SystemExit(n) exits with n, SystemExit("message") prints the message and exits with 1."""
    message = ""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
        if isinstance(code, str):
            code, message = 1, code + "\n"
    out, err = capsys.readouterr()
    return code, out, err + message


def unrollc(*argv, cwd=None):
    exe = shutil.which("unrollc")
    cmd = [exe, *argv] if exe else [sys.executable, "-m", "unroll.compiler.cli", *argv]
    return subprocess.run(
        cmd, check=False, capture_output=True, text=True, cwd=cwd, timeout=120, env=dict(os.environ)
    )


def no_traceback(text: str) -> bool:
    return "Traceback" not in text and 'File "' not in text


# --------------------------------------------------------------------------- help and version
def test_version(capsys):
    code, out, _ = run_main(capsys, "--version")
    assert code == 0
    assert out.strip() == f"unrollc {VERSION}"


def test_help(capsys):
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    for name in SUBCOMMANDS:
        assert name in out


def test_no_command_prints_help(capsys):
    code, out, _ = run_main(capsys)
    assert code in (0, None)
    assert "usage: unrollc" in out


def test_every_command_is_known():
    assert {"compile", "check", "list", "explain", "graph", "ops"} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_of_every_command(capsys, command):
    code, out, err = run_main(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: unrollc {command}")
    assert err == ""


def test_entry_point_version_and_help():
    res = unrollc("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"unrollc {VERSION}"
    res = unrollc("compile", "--help")
    assert res.returncode == 0 and "--layers" in res.stdout and "--class-name" in res.stdout


# --------------------------------------------------------------------------- compile
def test_compile_to_stdout_by_name(capsys):
    code, out, _err = run_main(capsys, "compile", "lista", "-o", "-")
    assert code == 0
    assert out == compile_source(SHIPPED["lista"].read_text(), "lista.unroll", make_options())
    compile(out, "lista_net.py", "exec")


def test_compile_to_a_file(capsys, tmp_path):
    target = tmp_path / "net.py"
    code, out, err = run_main(capsys, "compile", "ista", "--layers", "7", "-o", str(target))
    assert code == 0 and out == ""
    assert "wrote" in err and str(target) in err
    src = target.read_text()
    assert "num_layers = 7" in src and "# options: --layers 7" in src
    pyast.parse(src)


def test_compile_default_output_name(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, _ = run_main(capsys, "compile", "fista")
    assert code == 0
    assert (tmp_path / "fista_net.py").is_file()


def test_compile_by_path(capsys, tmp_path):
    spec = tmp_path / "my_ista.unroll"
    spec.write_text(SHIPPED["ista"].read_text().replace("spec ista", "spec my_ista"))
    code, out, _err = run_main(capsys, "compile", str(spec), "-o", "-", "--class-name", "Mine")
    assert code == 0
    assert "class Mine(rt.UnrolledModule):" in out
    assert "spec_name = 'my_ista'" in out


def test_compile_options(capsys):
    code, out, _ = run_main(
        capsys,
        "compile",
        "lista_untied",
        "-o",
        "-",
        "--tie",
        "We",
        "--tie",
        "theta",
        "--freeze",
        "Wt",
        "--layers",
        "3",
    )
    assert code == 0
    assert "# options: --layers 3 --tie We,theta --freeze Wt" in out
    assert "self.register_buffer('Wt'" in out


def test_compile_written_file_imports(tmp_path):
    import importlib.util

    import torch

    res = unrollc("compile", "lista", "--layers", "2", "-o", "lista_net.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and "wrote lista_net.py" in res.stderr
    spec = importlib.util.spec_from_file_location("cli_lista_net", tmp_path / "lista_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.Lista(torch.randn(3, 5, dtype=torch.float64))
    assert net(torch.randn(3, dtype=torch.float64)).shape == (5,)


# --------------------------------------------------------------------------- other commands
def test_check_ok(capsys):
    code, out, err = run_main(capsys, "check", "lista")
    assert code == 0 and err == ""
    assert re.search(r"lista\.unroll: ok \(lista: 3 parameters, 1 states, 16 layers\)", out)
    code, out, _ = run_main(capsys, "check", "lista", "--layers", "4")
    assert code == 0 and "4 layers" in out


def test_list(capsys):
    code, out, _ = run_main(capsys, "list")
    assert code == 0
    lines = out.strip().split("\n")
    assert [ln.split()[0] for ln in lines] == sorted(SHIPPED)
    assert any(ln.startswith("lista ") and "LISTA (learned ISTA, tied weights)" in ln for ln in lines)


def test_explain(capsys):
    code, out, _ = run_main(capsys, "explain", "lista")
    assert code == 0
    assert "x = soft(Wt @ x + We @ y, theta)" in out
    assert "theta" in out and "positive" in out
    code, latex, _ = run_main(capsys, "explain", "lista", "--latex")
    assert code == 0
    assert "\\mathcal{S}" in latex and "\\begin{aligned}" in latex
    # the plan's guards: FISTA's t only for the trace, its last momentum step skipped
    code, out, _ = run_main(capsys, "explain", "fista")
    lines = out.split("layer loop")[1].split("\n")
    (t,) = [ln for ln in lines if ln.strip().startswith("t ")]
    (v,) = [ln for ln in lines if ln.strip().startswith("v ")]
    assert "only when the trace records" in t and "[not after the last layer]" in v


def test_graph(capsys):
    code, out, _ = run_main(capsys, "graph", "lcod")
    assert code == 0
    assert out.startswith('digraph "lcod" {') and out.rstrip().endswith("}")
    assert " -> " in out


def test_ops(capsys):
    code, out, _ = run_main(capsys, "ops")
    assert code == 0
    listed = [ln.split()[0] for ln in out.strip().split("\n")]
    assert listed == function_names()
    assert {"soft", "hard_topk", "ss_soft", "prev", "grad"} <= set(listed)
    # --markdown: the generated operator tables of docs/language.md, one row per callable name
    code, md, _ = run_main(capsys, "ops", "--markdown")
    assert code == 0
    rows = [r for r in md.split("\n") if r.startswith("| `")]
    for name in function_names():
        assert sum(f"`{name}(" in r.split(" | ")[0] for r in rows) == 1, name
    assert all(r.endswith(" |") for r in rows)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("command", ["compile", "check", "explain", "graph"])
def test_spec_errors_exit_1_with_location(capsys, tmp_path, command):
    path = tmp_path / "bad.unroll"
    path.write_text(BAD_SPEC)
    code, out, err = run_main(capsys, command, str(path), *(["-o", "-"] if command == "compile" else []))
    assert code == 1
    assert out == ""
    assert re.search(r"bad\.unroll:7:13: error: ", err), err
    assert no_traceback(err)


def test_checker_errors_exit_1_with_location(capsys, tmp_path):
    path = tmp_path / "bad.unroll"
    path.write_text(BAD_NAME)
    code, _, err = run_main(capsys, "check", str(path))
    assert code == 1
    assert re.search(r"bad\.unroll:7:13: error: .*yy", err), err
    assert "^^" in err


def test_errors_through_the_entry_point_have_no_traceback(tmp_path):
    (tmp_path / "bad.unroll").write_text(BAD_SPEC)
    (tmp_path / "dedent.unroll").write_text(BAD_SPEC.replace("    x = x + * y", "    x = x + y\n  x = x"))
    for args in (
        ("compile", "bad.unroll", "-o", "-"),
        ("check", "dedent.unroll"),
        ("compile", "listaa"),
        ("compile", "lista", "--tie", "nope"),
        ("compile", "ista", "-o", "no/such/dir/x.py"),
    ):
        res = unrollc(*args, cwd=tmp_path)
        assert res.returncode == 1, (args, res.stderr)
        assert res.stdout == ""
        assert "error" in res.stderr
        assert no_traceback(res.stderr), (args, res.stderr)
    res = unrollc("compile", "bad.unroll", "-o", "-", cwd=tmp_path)
    assert res.stderr.startswith("bad.unroll:7:13: error: ")


def test_unknown_spec_name_gives_a_hint(capsys):
    code, out, err = run_main(capsys, "compile", "listaa", "-o", "-")
    assert code == 1 and out == ""
    assert "unknown spec `listaa`" in err
    assert "did you mean `lista`?" in err
    code, _, err = run_main(capsys, "check", "zzzzzz")
    assert code == 1 and "unrollc list" in err


def test_missing_file(capsys, tmp_path):
    code, _, err = run_main(capsys, "check", str(tmp_path / "nope.unroll"))
    assert code == 1
    assert "nope.unroll" in err and "error" in err


def test_bad_options(capsys):
    code, _, err = run_main(capsys, "compile", "lista", "--untie", "Wx", "-o", "-")
    assert code == 1
    assert re.search(r"<options>:1:\d+: error: --untie: `Wx`", err), err
    assert "did you mean" in err
    code, _, err = run_main(capsys, "compile", "lista", "--layers", "-3", "-o", "-")
    assert code == 1 and "--layers" in err


def test_usage_errors_exit_nonzero(capsys):
    code, _, err = run_main(capsys, "compile", "lista", "--layers", "abc")
    assert code not in (0, None)
    assert "invalid int value" in err
    code, _, err = run_main(capsys, "frobnicate")
    assert code not in (0, None)
    code, _, err = run_main(capsys, "compile")
    assert code not in (0, None) and "SPEC" in err


# --------------------------------------------------------------------------- demo
def test_demo_runs_quickly_on_a_sparse_coding_spec(capsys):
    code, out, _ = run_main(capsys, "demo", "lista", "--layers", "2", "--steps", "2")
    assert code == 0
    assert "layer" in out and "untrained = classical" in out


def test_demo_refuses_a_spec_that_is_not_shipped(capsys, tmp_path):
    path = tmp_path / "mine.unroll"
    path.write_text((Path(SPEC_DIR) / "ista.unroll").read_text())
    code, _, err = run_main(capsys, "demo", str(path), "--layers", "1", "--steps", "1")
    assert code == 2 and "not a shipped spec" in err and no_traceback(err)


@pytest.mark.parametrize("name", SHIPPED)
def test_explain_and_graph_work_for_every_shipped_spec(capsys, name):
    # sub-networks, user operators, history sums and final stages all have a LaTeX form
    code, out, _ = run_main(capsys, "explain", name, "--latex")
    assert code == 0 and "\\begin{aligned}" in out
    code, out, _ = run_main(capsys, "graph", name)
    assert code == 0 and out.startswith("digraph")


CATALOG_FAMILIES_A_TO_D = ["ista", "fista", "lista", "lista_untied", "lcod", "iht", "lista_iht", "lista_cp", "lista_cpss", "alista", "scn", "srcnn_sc", "fbpconvnet", "ml_csc_layered", "ml_ista", "task_driven_dl", "sprechmann_encoder", "amp", "sparcom", "lsparcom", "hosseini_dense_pgd", "lohit_pgd_fusion", "detnet", "admm_lasso", "admm_csnet", "ding_rain_admm", "hqs_generic", "dublid", "pdhg", "learned_pdhg", "learned_primal_dual", "lpd_nodule_detection", "prox_linear_psse", "schuler_deblur", "misi", "misi_unfolded", "perrone_tv_blind", "rpca_ista", "corona", "nmf_mu", "deep_nmf"]


def test_every_catalog_id_of_families_a_to_d_ships_and_is_listed(capsys):
    assert len(CATALOG_FAMILIES_A_TO_D) == 41
    code, out, _ = run_main(capsys, "list")
    assert code == 0
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    missing = [name for name in CATALOG_FAMILIES_A_TO_D if name not in SHIPPED or name not in listed]
    assert not missing, missing
