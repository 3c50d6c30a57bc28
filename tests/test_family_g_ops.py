"""Issue 8 (family G) language additions: the symmetric-boundary convolution `conv2s`/`conv2s_adj`,
the influence functions `rbf` and `pwl`, the filter constraints `zero_mean`/`unit_norm`, and
sub-networks applied row-wise over leading axes.  float64; references are numpy/scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import unroll
from unroll import runtime as rt
from unroll.compiler.operators import OPERATORS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DT = torch.float64


def rand(*shape, seed=0, complex_=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=DT)
    if complex_:
        x = torch.complex(x, torch.randn(*shape, generator=g, dtype=DT))
    return x


def inner(a, b):
    return torch.vdot(a.reshape(-1), b.reshape(-1))


# ------------------------------------------------------------------ conv2s
@pytest.mark.parametrize("s", [3, 5, 7])
def test_conv2s_is_scipy_convolve_with_reflect_boundary(s):
    ndimage = pytest.importorskip("scipy.ndimage")
    k, x = rand(s, s, seed=1), rand(9, 8, seed=2)
    # scipy's 'reflect' mode is the half-sample symmetric extension (d c b a | a b c d | d c b a)
    expected = ndimage.convolve(x.numpy(), k.numpy(), mode="reflect")
    np.testing.assert_allclose(rt.conv2s(k, x).numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("s", [2, 3, 4, 5])
@pytest.mark.parametrize("complex_", [False, True])
def test_conv2s_matches_reference_loops_and_is_adjoint(s, complex_):
    k = rand(3, s, s, seed=1, complex_=complex_)
    x, y = rand(6, 7, seed=2, complex_=complex_), rand(3, 6, 7, seed=3, complex_=complex_)
    np.testing.assert_allclose(rt.conv2s(k, x).numpy(), OPERATORS["conv2s"].reference(k.numpy(), x.numpy()),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rt.conv2s_adj(k, y).numpy(),
                               OPERATORS["conv2s_adj"].reference(k.numpy(), y.numpy()), rtol=1e-12, atol=1e-12)
    lhs, rhs = inner(y, rt.conv2s(k, x)), inner(rt.conv2s_adj(k, y), x.expand(3, 6, 7))
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def test_conv2s_kernel_wider_than_the_image_mirrors_repeatedly():
    k, x, y = rand(7, 7, seed=4), rand(3, 4, seed=5), rand(3, 4, seed=6)
    np.testing.assert_allclose(rt.conv2s(k, x).numpy(), OPERATORS["conv2s"].reference(k.numpy(), x.numpy()),
                               rtol=1e-12, atol=1e-12)
    assert abs(inner(y, rt.conv2s(k, x)) - inner(rt.conv2s_adj(k, y), x)) < 1e-12 * abs(inner(y, rt.conv2s(k, x)))


@pytest.mark.parametrize("pair", [("conv2", "conv2_adj"), ("conv2z", "conv2z_adj"), ("conv2s", "conv2s_adj")])
def test_every_boundary_mode_has_an_exact_adjoint_on_a_batch(pair):
    forward, adjoint = (getattr(rt, name) for name in pair)
    k = rand(4, 5, 5, seed=7)
    x, y = rand(2, 1, 8, 9, seed=8), rand(2, 4, 8, 9, seed=9)  # a batch of images against a bank
    lhs = inner(y, forward(k, x))
    rhs = inner(adjoint(k, y).sum(dim=1, keepdim=True), x)
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def test_conv2s_gradcheck():
    k, x = rand(2, 3, 3, seed=1).requires_grad_(), rand(5, 4, seed=2).requires_grad_()
    assert torch.autograd.gradcheck(rt.conv2s, (k, x))
    assert torch.autograd.gradcheck(rt.conv2s_adj, (k, rand(2, 5, 4, seed=3).requires_grad_()))


# ------------------------------------------------------------------ rbf
def _dense_rbf(z, w, mu, gamma):
    """The mixture with the [F, J, h, w] tensor materialised (the naive way)."""
    e = np.exp(-(z[:, None] - mu[None, :, None, None]) ** 2 / (2 * gamma**2))
    return (w[:, :, None, None] * e).sum(axis=1)


def test_rbf_equals_the_materialised_mixture_on_a_batch():
    z, w, mu = rand(2, 3, 5, 6, seed=1), rand(3, 7, seed=2), torch.linspace(-2, 2, 7, dtype=DT)
    out = rt.rbf(z, w, mu, 0.4, batched=True)
    for b in range(2):
        np.testing.assert_allclose(out[b].numpy(), _dense_rbf(z[b].numpy(), w.numpy(), mu.numpy(), 0.4),
                                   rtol=1e-13, atol=1e-14)
    one = rt.rbf(z[0], w[0], mu, 0.4)  # one function for every value
    np.testing.assert_allclose(one.numpy(), OPERATORS["rbf"].reference(z[0].numpy(), w[0].numpy(), mu.numpy(), 0.4),
                               rtol=1e-13, atol=1e-14)


def test_rbf_gradcheck_in_all_arguments():
    z, w = rand(2, 3, 4, seed=3).requires_grad_(), rand(2, 5, seed=4).requires_grad_()
    mu = torch.linspace(-1, 1, 5, dtype=DT).requires_grad_()
    gamma = torch.tensor(0.7, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: rt.rbf(*a), (z, w, mu, gamma))
    zb = rand(2, 2, 3, 4, seed=5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: rt.rbf(a, b, mu.detach(), 0.5, batched=True), (zb, w))
    assert torch.autograd.gradcheck(lambda a, b: rt.rbf(a, b, mu.detach(), 0.5), (z, w[0].detach().requires_grad_()))


def test_rbf_saves_nothing_of_size_filters_times_centres_times_pixels():
    z = rand(4, 16, 16, seed=6).requires_grad_()
    w, mu = rand(4, 63, seed=7).requires_grad_(), torch.linspace(-3, 3, 63, dtype=DT)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        out = rt.rbf(z, w, mu, 0.1)
    out.sum().backward()
    assert max(saved) <= z.numel() and z.grad is not None and w.grad is not None


# ------------------------------------------------------------------ pwl
def test_pwl_is_numpy_interp_per_filter():
    knots = torch.tensor([-1.0, -0.2, 0.3, 1.5], dtype=DT)
    values = rand(3, 4, seed=1)
    z = 2 * rand(3, 5, 6, seed=2)  # values beyond both ends too
    out = rt.pwl(z, knots, values)
    for f in range(3):
        np.testing.assert_allclose(out[f].numpy(), np.interp(z[f].numpy(), knots.numpy(), values[f].numpy()),
                                   rtol=1e-14, atol=1e-14)
    batch = rt.pwl(torch.stack([z, -z]), knots, values, batched=True)
    torch.testing.assert_close(batch[1], rt.pwl(-z, knots, values), rtol=0, atol=0)
    np.testing.assert_allclose(rt.pwl(z[0], knots, values[0]).numpy(),
                               OPERATORS["pwl"].reference(z[0].numpy(), knots.numpy(), values[0].numpy()))


def test_pwl_gradcheck_away_from_knots():
    knots = torch.tensor([-1.0, 0.0, 1.0], dtype=DT, requires_grad=True)
    values = rand(2, 3, seed=3).requires_grad_()
    z = torch.tensor([[-1.5, -0.6, 0.25], [0.7, 1.2, -0.3]], dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(rt.pwl, (z, knots, values))


# ------------------------------------------------------------------ constraints
def test_filter_constraints_reproduce_the_default_and_hold_after_a_step():
    bank = rand(3, 4, 5, 5, seed=1)  # a per-layer stack [layers, F, s, s]: each filter is the last 2 axes
    centred = bank - bank.mean(dim=(-2, -1), keepdim=True)
    both = rt.ZeroMeanUnitNorm(centred / centred.norm(dim=(-2, -1), keepdim=True), 2)
    torch.testing.assert_close(both(), centred / centred.norm(dim=(-2, -1), keepdim=True), rtol=1e-15, atol=1e-15)
    for module in (rt.ZeroMean(bank, 2), rt.UnitNorm(bank, 2), both):
        with torch.no_grad():
            for p in module.parameters():
                p.add_(rand(*p.shape, seed=9))
        value = module()
        if not isinstance(module, rt.UnitNorm):
            assert value.mean(dim=(-2, -1)).abs().max() < 1e-14
        if not isinstance(module, rt.ZeroMean):
            torch.testing.assert_close(value.norm(dim=(-2, -1)), torch.ones(3, 4, dtype=DT))
    with pytest.raises(ValueError, match="k: `zero_mean unit_norm` needs a default without zero filters"):
        rt.ZeroMeanUnitNorm(torch.ones(2, 3, 3, dtype=DT), 2, name="k")


FILTER_SPEC = """
spec filters "filter constraints"
dims h, w, F, s
data k0 : real[F, s, s]
input x : real[h, w]
param k : real[F, s, s] = k0  {annotations}
state u : real[F, h, w] = 0
layers 2
step:
    u = conv2s(k, x)
output u
"""


@pytest.mark.parametrize("annotations,mean0,norm1", [("learned per_layer zero_mean", True, False),
                                                      ("learned shared unit_norm", False, True),
                                                      ("fixed shared zero_mean unit_norm", True, True)])
def test_filter_constraints_in_a_spec(annotations, mean0, norm1, tmp_path):
    path = tmp_path / "filters.unroll"
    path.write_text(FILTER_SPEC.format(annotations=annotations))
    net = unroll.load(path)(k0=rand(3, 3, 3, seed=2))
    k = net.parameter_values()["k"]
    assert (k.mean(dim=(-2, -1)).abs().max() < 1e-14) == mean0
    assert bool(torch.allclose(k.norm(dim=(-2, -1)), torch.ones(k.shape[:-2], dtype=DT))) == norm1


def load_text(tmp_path, name: str, text: str, **options):
    path = tmp_path / f"{name}.unroll"
    path.write_text(text)
    return unroll.load(path, **options)


# ------------------------------------------------------------------ sub-networks over leading axes
ROWS_SPEC = """
spec rows "nets applied row-wise"
dims K, n, C, h, w
hyper width : int = 6
input P : real[K, n]
input V : real[K, C, h, w]
net g : mlp(in=n+1, out=2, width=width, depth=2)  learned shared
net c : cnn(in=C, out=1, width=4, depth=2)         learned shared
state a : real[K, 2] = 0
state b : real[K, 1, h, w] = 0
layers 1
step:
    a = g(P, 0.5)
    b = c(V)
output a, b
"""


def test_nets_map_every_row_of_a_stack(tmp_path):
    torch.manual_seed(0)
    net = load_text(tmp_path, "rows", ROWS_SPEC)(K=3, n=4, C=2, dtype=DT)
    P, V = rand(5, 3, 4, seed=1), rand(5, 3, 2, 6, 7, seed=2)
    a, b = net(P, V)
    assert a.shape == (5, 3, 2) and b.shape == (5, 3, 1, 6, 7)
    for i in range(5):
        for k in range(3):
            features = torch.cat([P[i, k], torch.tensor([0.5], dtype=DT)])
            torch.testing.assert_close(a[i, k], net.g(features), rtol=1e-14, atol=1e-14)
            torch.testing.assert_close(b[i, k], net.c(V[i, k][None])[0], rtol=1e-14, atol=1e-14)
    a1, b1 = net(P[0], V[0])  # one unbatched sample
    torch.testing.assert_close(a1, a[0], rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(b1, b[0], rtol=1e-14, atol=1e-14)


# ------------------------------------------------------------------ dtype agnostic
def _family_g_nets(dtype):
    """Each family G spec built in `dtype`, with an input."""
    rng = np.random.default_rng(0)
    k0 = rng.standard_normal((3, 3, 3))
    torch.manual_seed(0)
    yield unroll.load("resnet_euler", layers=3)(n=4, width=8, dtype=dtype), torch.from_numpy(rng.standard_normal((2, 4)))
    image = torch.from_numpy(rng.uniform(0, 1, (2, 8, 8)))
    yield unroll.load("perona_malik", layers=3)(), image
    yield unroll.load("tnrd", layers=2)(k0=torch.from_numpy(k0).to(dtype), w0=rng.standard_normal((3, 5)),
                                        centers=np.linspace(-1, 1, 5)), image
    M0, free = np.zeros((1, 3, 3)), np.zeros((1, 3, 3))
    M0[0, 2, 0] = M0[0, 0, 2] = 1.0
    yield unroll.load("pde_net", layers=3)(M0=torch.from_numpy(M0).to(dtype), free=free,
                                           c0=np.full((1, 8, 8), 0.1)), image


def test_family_g_specs_run_in_float32_like_float64():
    for (net64, x), (net32, _) in zip(_family_g_nets(DT), _family_g_nets(torch.float32)):
        net32.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v
                               for k, v in net64.state_dict().items()})
        out64, out32 = net64(x), net32(x.to(torch.float32))
        assert out32.dtype == torch.float32 and out64.dtype == DT
        torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-5)
