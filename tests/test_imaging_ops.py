"""Runtime kernels of the imaging / audio operators added for issue 3 (part 2).

Each kernel is checked three ways: against its numpy reference registered in
compiler/operators/ (the same one `unrollc ops` documents), against torch's own
layers where one exists (conv2d, unfold/fold, interpolate, stft), and by gradcheck
in float64.  Every linear operator passes the adjoint dot-product test
<A x, y> = <x, A^H y>; STFT/iSTFT pass perfect reconstruction.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from unroll import runtime as rt
from unroll.compiler.operators import OPERATORS

DT = torch.float64


def ref(name):
    return OPERATORS[name].reference


def rand(*shape, seed=0, complex_=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=DT)
    if complex_:
        x = torch.complex(x, torch.randn(*shape, generator=g, dtype=DT))
    return x


def close(a, b, tol=1e-12):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.abs(a - b).max() <= tol * max(1.0, np.abs(b).max())


def inner(a, b):
    return torch.vdot(a.reshape(-1), b.reshape(-1))


# ------------------------------------------------------------------ zero-boundary convolution
@pytest.mark.parametrize("s", [3, 4, 5])
@pytest.mark.parametrize("complex_", [False, True])
def test_conv2z_matches_reference_and_adjoint(s, complex_):
    k, x, y = rand(2, s, s, seed=1, complex_=complex_), rand(7, 6, seed=2, complex_=complex_), \
        rand(2, 7, 6, seed=3, complex_=complex_)
    close(rt.conv2z(k, x).numpy(), ref("conv2z")(k.numpy(), x.numpy()))
    close(rt.conv2z_adj(k, y).numpy(), ref("conv2z_adj")(k.numpy(), y.numpy()))
    # adjoint per kernel of the bank: <k * x, y> = <x, k~ * y>
    lhs = inner(y, rt.conv2z(k, x))
    rhs = inner(rt.conv2z_adj(k, y), x.expand(2, 7, 6))
    assert abs(lhs - rhs) < 1e-12 * abs(lhs)


def test_conv2z_is_torch_conv2d_with_the_flipped_kernel():
    W, x = rand(4, 3, 5, 5, seed=4), rand(2, 3, 9, 8, seed=5)
    ours = rt.conv2z(W, x[:, None]).sum(dim=2)  # bank [o, c, s, s] on images [c, h, w]
    theirs = F.conv2d(x, W.flip(-2, -1), padding=2)
    close(ours.numpy(), theirs.numpy())
    close(rt.conv2z_adj(W, x[:, None]).sum(dim=2).numpy(), F.conv2d(x, W, padding=2).numpy())


def test_gradcheck_conv2z():
    k, x = rand(3, 3, seed=6).requires_grad_(), rand(5, 4, seed=7).requires_grad_()
    assert torch.autograd.gradcheck(rt.conv2z, (k, x))
    assert torch.autograd.gradcheck(rt.conv2z_adj, (k, x))


# ------------------------------------------------------------------ patches and 1x1 convolution
@pytest.mark.parametrize("s", [3, 5])
def test_patches_are_torch_unfold_and_unpatch_is_fold(s):
    x = rand(2, 9, 7, seed=8)
    P = rt.patches(x, s)
    close(P.reshape(2, s * s, -1).numpy(), F.unfold(x[:, None], s, padding=(s - 1) // 2).numpy())
    close(P[0].numpy(), ref("patches")(x[0].numpy(), s))
    z = rand(2, s * s, 9, 7, seed=9)
    folded = F.fold(z.reshape(2, s * s, -1), (9, 7), s, padding=(s - 1) // 2)[:, 0]
    close(rt.unpatch(z, s).numpy(), folded.numpy())
    close(rt.unpatch(z, s)[1].numpy(), ref("unpatch")(z[1].numpy(), s))
    assert abs(inner(P, z) - inner(x, rt.unpatch(z, s))) < 1e-12 * abs(inner(P, z))


def test_patch_average_recombines_patches_exactly():
    x = rand(3, 8, 8, seed=10)
    close(rt.patch_average(rt.patches(x, 5), 5).numpy(), x.numpy())
    z = rand(9, 6, 5, seed=11)
    close(rt.patch_average(z, 3).numpy(), ref("patch_average")(z.numpy(), 3))


def test_chanmix_is_a_1x1_convolution():
    W, x = rand(5, 3, seed=12), rand(2, 3, 6, 7, seed=13)
    close(rt.chanmix(W, x).numpy(), F.conv2d(x, W[:, :, None, None]).numpy())
    close(rt.chanmix(W, x)[0].numpy(), ref("chanmix")(W.numpy(), x[0].numpy()))
    assert torch.autograd.gradcheck(rt.chanmix, (W.requires_grad_(), x[0].requires_grad_()))


def test_gradcheck_patches():
    x = rand(5, 4, seed=14).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: rt.patch_average(rt.patches(v, 3) ** 2, 3), (x,))


# ------------------------------------------------------------------ resampling
def test_down_up_are_adjoint_and_match_references():
    x, u = rand(2, 8, 12, seed=15), rand(2, 4, 6, seed=16)
    close(rt.down(x, 2).numpy(), ref("down")(x.numpy(), 2))
    close(rt.up(u, 2)[0].numpy(), ref("up")(u[0].numpy(), 2))
    assert abs(inner(rt.down(x, 2), u) - inner(x, rt.up(u, 2))) < 1e-12


@pytest.mark.parametrize("r", [2, 3, 4])
def test_bicubic_matches_the_keys_reference_and_torch(r):
    x = rand(2, 5, 7, seed=17)
    out = rt.bicubic(x, r)
    assert out.shape == (2, 5 * r, 7 * r)
    close(out[1].numpy(), ref("bicubic")(x[1].numpy(), r), 1e-12)
    torch_out = F.interpolate(x[:, None], scale_factor=r, mode="bicubic", align_corners=False)[:, 0]
    close(out.numpy(), torch_out.numpy())
    assert torch.autograd.gradcheck(lambda v: rt.bicubic(v, r), (x[0].clone().requires_grad_(),))


# ------------------------------------------------------------------ kernels: support, pad, crop
@pytest.mark.parametrize("s", [3, 4])
def test_pad_crop_support_and_otf(s):
    k = rand(2, s, s, seed=18)
    K = rt.pad_kernel(k, 8, 9)
    close(torch.fft.fft2(K).numpy(), rt.otf(k, 8, 9).numpy())
    close(K.numpy(), ref("pad_kernel")(k.numpy(), 8, 9))
    close(rt.crop_kernel(K, s).numpy(), k.numpy())
    close(rt.support(K, s).numpy(), K.numpy())  # a padded kernel lies inside its support
    big = rand(2, 8, 9, seed=19)
    close(rt.support(big, s).numpy(), ref("support")(big.numpy(), s))
    close(rt.pad_kernel(rt.crop_kernel(big, s), 8, 9).numpy(), rt.support(big, s).numpy())
    close(rt.crop_kernel(big, s).numpy(), ref("crop_kernel")(big.numpy(), s))
    assert abs(inner(rt.pad_kernel(k, 8, 9), big) - inner(k, rt.crop_kernel(big, s))) < 1e-12


def test_kernel_gradient_by_crop_is_the_adjoint_of_convolving_with_the_image():
    # the map k -> conv2(k, x) for an s x s kernel has adjoint r -> crop(ifft2(conj(fft2 x) fft2 r), s)
    x, r, k = rand(10, 9, seed=20), rand(10, 9, seed=21), rand(5, 5, seed=22)
    adj = rt.crop_kernel(torch.fft.ifft2(torch.fft.fft2(x).conj() * torch.fft.fft2(r)).real, 5)
    assert abs(inner(rt.conv2(k, x), r) - inner(k, adj)) < 1e-12 * abs(inner(k, adj))


# ------------------------------------------------------------------ finite differences
def test_grad2_div2_are_minus_adjoint():
    x, p = rand(2, 6, 7, seed=23), rand(2, 2, 6, 7, seed=24)
    close(rt.grad2(x)[0].numpy(), ref("grad2")(x[0].numpy()))
    close(rt.div2(p)[1].numpy(), ref("div2")(p[1].numpy()))
    assert abs(inner(rt.grad2(x), p) + inner(x, rt.div2(p))) < 1e-12
    # the Laplacian of a constant vanishes
    close(rt.div2(rt.grad2(torch.ones(4, 5, dtype=DT))).numpy(), np.zeros((4, 5)))


# ------------------------------------------------------------------ STFT / iSTFT
@pytest.mark.parametrize("n_fft,hop", [(64, 16), (32, 8), (16, 8)])
def test_stft_matches_numpy_and_istft_inverts(n_fft, hop):
    T = 300
    F_, N = n_fft // 2 + 1, 1 + T // hop
    x = rand(3, T, seed=25)
    X = rt.stft(x, F_, N, hop)
    assert X.shape == (3, F_, N) and X.is_complex()
    close(X[2].numpy(), ref("stft")(x[2].numpy(), F_, N, hop), 1e-12)
    close(rt.istft(X, T, hop).numpy(), x.numpy(), 1e-12)  # perfect reconstruction
    Y = rand(2, F_, N, seed=26, complex_=True)
    Y[..., 0, :] = Y[..., 0, :].real  # DC and Nyquist bins of a real signal's spectrum are real
    Y[..., -1, :] = Y[..., -1, :].real
    close(rt.istft(Y, T, hop)[0].numpy(), ref("istft")(Y[0].numpy(), T, hop), 1e-12)


def test_stft_checks_the_declared_frame_count():
    with pytest.raises(ValueError, match="frames"):
        rt.stft(rand(100, seed=27), 17, 99, 16)


def test_gradcheck_stft_istft():
    x = rand(40, seed=28).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: rt.istft(rt.stft(v, 9, 11, 4) * 0.5, 40, 4), (x,))
    assert torch.autograd.gradcheck(lambda v: torch.view_as_real(rt.stft(v, 9, 11, 4)), (x,))


@pytest.mark.parametrize("fn", [
    lambda v: rt.down(v, 2), lambda v: rt.up(v, 2), lambda v: rt.support(v, 3), lambda v: rt.crop_kernel(v, 3),
    lambda v: rt.pad_kernel(v[:3, :3], 6, 8), lambda v: rt.grad2(v), lambda v: rt.div2(torch.stack((v, 2 * v))),
    lambda v: rt.unpatch(rt.patches(v, 3), 3), lambda v: rt.conv2z_adj(v[:3, :3], v),
], ids=["down", "up", "support", "crop_kernel", "pad_kernel", "grad2", "div2", "unpatch", "conv2z_adj"])
def test_gradcheck_linear_imaging_operators(fn):
    assert torch.autograd.gradcheck(fn, (rand(6, 8, seed=30).requires_grad_(),))


def test_history_sum_gradcheck():
    beta = rand(4, seed=31).requires_grad_()
    xs = [rand(2, 3, seed=32 + j).requires_grad_() for j in range(3)]
    assert torch.autograd.gradcheck(lambda b, *h: rt.history_sum(b, list(h)), (beta, *xs))
