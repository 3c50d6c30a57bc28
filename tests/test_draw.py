"""`unrollc draw` (compiler/draw.py): every shipped spec gives a well-formed, non-empty SVG; PNG output
(matplotlib) for a few; the picture's structure (blocks, per-layer and shared parameters, sub-networks,
fixed data, the final stage) checked on the scene; the compiler does not import torch."""

import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from unroll.compiler.cli import main
from unroll.compiler.draw import scene, to_svg
from unroll.compiler.driver import check_source, make_options, shipped_specs
from unroll.compiler.planner import plan

SVG = "{http://www.w3.org/2000/svg}"


def _scene(spec, **options):
    path = shipped_specs()[spec]
    return scene(plan(check_source(path.read_text(), str(path), make_options(**options))))


def _boxes(shapes, role):
    return [s for s in shapes if s.kind == "box" and s.role == role]


@pytest.mark.parametrize("spec", sorted(shipped_specs()))
def test_every_spec_renders_svg(spec):
    shapes, (w, h) = _scene(spec, layers=3)
    root = ET.fromstring(to_svg(shapes, (w, h)))
    assert root.tag == f"{SVG}svg"
    rects = root.findall(f".//{SVG}rect")
    texts = [t.text for t in root.findall(f".//{SVG}text")]
    assert len([r for r in rects if r.get("class") == "block"]) == 3
    assert any(t and t.startswith("output: ") for t in texts)
    # everything inside the canvas
    for s in shapes:
        xs = [s.x, s.x + s.w] if s.kind == "box" else [s.x, s.x2] if s.kind == "arrow" else [s.x]
        ys = [s.y, s.y + s.h] if s.kind == "box" else [s.y, s.y2] if s.kind == "arrow" else [s.y]
        assert all(0 <= v <= w for v in xs) and all(0 <= v <= h for v in ys), (spec, s)


@pytest.mark.parametrize("spec", ["lista", "learned_pdhg", "fista"])
def test_png(tmp_path, spec):
    pytest.importorskip("matplotlib")
    from PIL import Image

    out = tmp_path / f"{spec}.png"
    assert main(["draw", spec, "--layers", "3", "-o", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 800 and im.size[1] > 200
        assert len(im.convert("L").getcolors(maxcolors=100000)) > 10  # not a blank canvas


def test_lista_three_blocks_shared_parameters_once():
    shapes, _ = _scene("lista", layers=3)
    blocks = _boxes(shapes, "block")
    assert [b.text for b in blocks] == ["layer 1", "layer 2", "layer 3"]
    assert sorted(b.text for b in _boxes(shapes, "param_shared")) == ["We", "Wt", "theta"]  # once, not per block
    assert _boxes(shapes, "band_shared")[0].text == "learned, shared by all layers"
    assert not _boxes(shapes, "param_layer")
    assert len([s for s in shapes if s.role == "shared_tap"]) == 3  # an arrow into every block
    assert [s.text for s in shapes if s.role == "state_flow"] == ["x⁰", "x¹", "x²"]


def test_per_layer_parameters_once_per_block():
    shapes, _ = _scene("lista_cp", layers=3)
    tags = _boxes(shapes, "param_layer")
    assert sorted((t.layer, t.text) for t in tags) == [(1, "We¹"), (1, "theta¹"), (2, "We²"), (2, "theta²"),
                                                       (3, "We³"), (3, "theta³")]
    for tag in tags:  # inside its own block
        block = next(b for b in _boxes(shapes, "block") if b.layer == tag.layer)
        assert block.x <= tag.x and tag.x + tag.w <= block.x + block.w and block.y <= tag.y <= block.y + block.h
    assert not _boxes(shapes, "param_shared")
    assert [b.text for b in _boxes(shapes, "fixed")] == ["A (data)"]


def test_sub_networks_operators_final_stage():
    shapes, _ = _scene("learned_pdhg", layers=2)
    assert sorted((b.layer, b.text) for b in _boxes(shapes, "net_layer")) == [
        (1, "Gamma¹ cnn"), (1, "Lambda¹ cnn"), (2, "Gamma² cnn"), (2, "Lambda² cnn")]
    assert sorted(b.text for b in _boxes(shapes, "param_shared")) == ["sigma", "tau", "theta"]
    assert "K (operator)" in [b.text for b in _boxes(shapes, "fixed")]
    assert [b.text for b in _boxes(shapes, "final")] == ["final stage"]
    assert [b.text for b in _boxes(shapes, "output")] == ["output: xhat"]
    shapes, _ = _scene("lpd_nodule_detection", layers=2)
    assert [b.text for b in _boxes(shapes, "net_shared")] == ["D (cnn)"]  # the detection head, used in `final:`


def test_deep_networks_show_an_ellipsis():
    shapes, _ = _scene("lista_cp")  # 16 layers
    assert [b.text for b in _boxes(shapes, "block")] == ["layer 1", "layer 2", "layer 16"]
    assert [s.text for s in shapes if s.role == "ellipsis_note"] == ["layers 3–15"]
    assert "We¹⁶" in [b.text for b in _boxes(shapes, "param_layer")]


def test_tying_options_change_the_picture():
    shapes, _ = _scene("lista_cp", layers=2, tie=["We"])
    assert [b.text for b in _boxes(shapes, "param_shared")] == ["We"]
    assert [(b.layer, b.text) for b in _boxes(shapes, "param_layer")] == [(1, "theta¹"), (2, "theta²")]


def test_cli_svg_and_bad_suffix(tmp_path, capsys):
    out = tmp_path / "lista.svg"
    assert main(["draw", "lista", "--layers", "2", "-o", str(out)]) == 0
    ET.parse(out)
    assert main(["draw", "lista", "-o", str(tmp_path / "lista.pdf")]) == 1
    assert "draw writes .svg or .png files" in capsys.readouterr().err


def test_draw_deterministic_and_without_torch(tmp_path):
    outs = []
    for k in range(2):
        out = tmp_path / f"{k}.svg"
        code = (f"import sys; from unroll.compiler.cli import main; assert main(['draw', 'admm_lasso', '-o', {str(out)!r}]) "
                "== 0; assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules")
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        outs.append(out.read_text())
    assert outs[0] == outs[1] and outs[0].startswith("<svg")


def test_depth_known_per_call():
    shapes, _ = _scene("viterbi")  # `layers T`: T is a dim of the input
    assert [b.text for b in _boxes(shapes, "block")] == ["layer 1", "layer 2", "layer T"]
    assert [s.text for s in shapes if s.role == "ellipsis_note"] == ["layers 3–T-1"]
