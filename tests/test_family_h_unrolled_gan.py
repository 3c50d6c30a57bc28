"""Catalog H3 as the unrolled-GAN inner loop (Metz et al.): the discriminator is a functional MLP whose
weights theta_D are the Adam state, K Adam ascent steps on the GAN objective f(theta_G, theta_D) run
inside the network, and the generator's gradient is backpropagated through them (second order).  The
spec is the manual's example `unrolled_gan_sketch` (docs/language.md §3.9, functional sub-networks).

References, float64: the same MLPs built from torch.nn layers with the weights of
`parameters_to_vector`'s layout, `torch.optim.Adam(maximize=True)` for the ascent steps, autograd on
that reference for the ordinary GAN gradient (K = 0, i.e. lr = 0), and central finite differences of the
reference's surrogate loss f(theta_G, theta_D^K(theta_G)) for K >= 1."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import unroll
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MANUAL = Path(__file__).resolve().parents[1] / "docs" / "language.md"
N, NZ, WIDTH = 16, 3, 8


def _spec(tmp_path) -> Path:
    (source,) = [b for b in re.findall(r"```unroll\n(.*?)```", MANUAL.read_text(), re.DOTALL)
                 if b.startswith("spec unrolled_gan_sketch ")]
    path = tmp_path / "unrolled_gan_sketch.unroll"
    path.write_text(source)
    return path


def _mlp(n_in, n_out):
    return nn.Sequential(nn.Linear(n_in, WIDTH), nn.ReLU(), nn.Linear(WIDTH, n_out)).double()


def _problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    angles = 2 * np.pi * torch.randint(0, 8, (N,), generator=gen).double() / 8
    xr = 2 * torch.stack([torch.cos(angles), torch.sin(angles)], 1) + 0.05 * torch.randn(N, 2, generator=gen, dtype=torch.float64)
    z = torch.randn(N, NZ, generator=gen, dtype=torch.float64)
    torch.manual_seed(seed)
    thG = nn.utils.parameters_to_vector(_mlp(NZ, 2).parameters()).detach()
    thD = nn.utils.parameters_to_vector(_mlp(2, 1).parameters()).detach()
    return xr, z, thG, thD


def _gan_objective(xr, z, thG, thD):
    """f(theta_G, theta_D) = mean log sigmoid(D(x)) + mean log(1 - sigmoid(D(G(z)))) with torch.nn layers;
    differentiable in both weight vectors (torch.func.functional_call)."""
    G, D = _mlp(NZ, 2), _mlp(2, 1)

    def as_params(module, vector):
        out, start = {}, 0
        for name, p in module.named_parameters():
            out[name] = vector[start:start + p.numel()].view_as(p)
            start += p.numel()
        assert start == vector.numel()
        return out

    fake = torch.func.functional_call(G, as_params(G, thG), (z,))
    d_real = torch.func.functional_call(D, as_params(D, thD), (xr,))
    d_fake = torch.func.functional_call(D, as_params(D, thD), (fake,))
    return torch.log(torch.sigmoid(d_real)).mean() + torch.log(1 - torch.sigmoid(d_fake)).mean()


def _torch_adam_ascent(xr, z, thG, thD, K, lr):
    """K steps of torch.optim.Adam(maximize=True) on f(theta_G, .) from theta_D: theta_D^0 .. theta_D^K."""
    theta = thD.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr, maximize=True)
    out = [theta.detach().clone()]
    for _ in range(K):
        opt.zero_grad()
        _gan_objective(xr, z, thG, theta).backward()
        opt.step()
        out.append(theta.detach().clone())
    return out


def _net(tmp_path, K, lr):
    return unroll.load(_spec(tmp_path), layers=K)(nz=NZ, lr=lr, dtype=torch.float64)


def test_the_discriminator_steps_are_torch_adam_ascent_steps(tmp_path):
    xr, z, thG, thD = _problem(0)
    K, lr = 5, 0.05
    net = _net(tmp_path, K, lr)
    assert net.dims["nd"] == thD.numel() and net.dims["ng"] == thG.numel()
    trace = net.trace(xr[None], z[None], thG[None], thD[None])
    _, loss = net(xr[None], z[None], thG[None], thD[None])
    ref = _torch_adam_ascent(xr, z, thG, thD, K, lr)
    for t in range(K + 1):
        torch.testing.assert_close(trace[t]["thD"][0], ref[t], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(loss[0], _gan_objective(xr, z, thG, ref[-1]).detach(), rtol=1e-12, atol=0)
    assert _gan_objective(xr, z, thG, ref[-1]) > _gan_objective(xr, z, thG, thD)  # the discriminator ascended


def test_with_K_zero_the_surrogate_gradient_is_the_ordinary_gan_gradient(tmp_path):
    xr, z, thG, thD = _problem(1)
    net = _net(tmp_path, 3, 0.0)  # lr = 0: theta_D^K = theta_D
    thG_var = thG.clone().requires_grad_(True)
    _, loss = net(xr[None], z[None], thG_var[None], thD[None])
    (surrogate,) = torch.autograd.grad(loss.sum(), thG_var)
    thG_ref = thG.clone().requires_grad_(True)
    (ordinary,) = torch.autograd.grad(_gan_objective(xr, z, thG_ref, thD), thG_ref)
    assert ordinary.abs().max() > 1e-3
    torch.testing.assert_close(surrogate, ordinary, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("K", [1, 4])
def test_the_generator_gradient_through_K_ascent_steps_equals_central_finite_differences(tmp_path, K):
    xr, z, thG, thD = _problem(2)
    lr = 0.1
    net = _net(tmp_path, K, lr)
    thG_var = thG.clone().requires_grad_(True)
    _, loss = net(xr[None], z[None], thG_var[None], thD[None])
    (unrolled,) = torch.autograd.grad(loss.sum(), thG_var)
    assert torch.isfinite(unrolled).all()

    def surrogate(theta_G):  # f(theta_G, theta_D^K(theta_G)) by the reference, without any graph
        return float(_gan_objective(xr, z, theta_G, _torch_adam_ascent(xr, z, theta_G, thD, K, lr)[-1]))

    h = 1e-6
    fd = torch.zeros_like(thG)
    for i in range(thG.numel()):
        e = torch.zeros_like(thG)
        e[i] = h
        fd[i] = (surrogate(thG + e) - surrogate(thG - e)) / (2 * h)
    torch.testing.assert_close(unrolled, fd, rtol=1e-6, atol=1e-8)
    # The second-order term d theta_D^K / d theta_G: Adam's first step is lr g / (|g| + eps), lr sign(g)
    # up to eps, so for K = 1 it nearly vanishes (measured 4e-7 of the gradient); for K = 4 (35 %) it
    # tells the unrolled gradient from the ordinary gradient at the final theta_D^K held fixed.
    thG_ref = thG.clone().requires_grad_(True)
    theta_K = _torch_adam_ascent(xr, z, thG, thD, K, lr)[-1]
    (first_order,) = torch.autograd.grad(_gan_objective(xr, z, thG_ref, theta_K), thG_ref)
    if K > 1:
        assert (unrolled - first_order).abs().max() > 0.1 * first_order.abs().max()


def test_a_negative_step_is_refused(tmp_path):
    with pytest.raises(ValueError, match="lr"):
        _net(tmp_path, 2, -0.1)
