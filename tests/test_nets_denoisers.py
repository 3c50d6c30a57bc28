"""The `dncnn` and `unet` sub-network kinds and the operator-norm Lipschitz bound (runtime/nets_denoisers.py).

References are independent of the implementation: the dense matrix of a convolution operator built
column by column from scipy.ndimage.correlate, its norm by numpy.linalg.norm(W, 2) (an SVD)."""

import numpy as np
import pytest
import torch
from unroll.runtime.loader import load_text
from unroll.runtime.nets_denoisers import DnCNN, SpectralConv2d, UNet

ndimage = pytest.importorskip("scipy.ndimage")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def correlate_same(image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """A multi-channel 'same' convolution (cross-correlation, zero padding) of image [in, h, w] by
    weight [out, in, k, k], with scipy: [out, h, w]."""
    out = np.zeros((weight.shape[0],) + image.shape[1:])
    for o in range(weight.shape[0]):
        for i in range(weight.shape[1]):
            out[o] += ndimage.correlate(image[i], weight[o, i], mode="constant", cval=0.0)
    return out


def dense_operator(weight: np.ndarray, h: int, w: int) -> np.ndarray:
    """The matrix of x ↦ weight ∗ x on images [in, h, w] (columns: the images of the unit vectors)."""
    n_in = weight.shape[1] * h * w
    columns = []
    for j in range(n_in):
        e = np.zeros(n_in)
        e[j] = 1.0
        columns.append(correlate_same(e.reshape(weight.shape[1], h, w), weight).ravel())
    return np.stack(columns, axis=1)


def test_power_iteration_matches_the_dense_operator_norm():
    torch.manual_seed(0)
    conv = SpectralConv2d(2, 3, 3).double()
    h, w = 5, 6
    reference = np.linalg.norm(dense_operator(conv.weight.detach().numpy(), h, w), 2)
    estimate = conv.operator_norm(h, w, iterations=3000)
    assert abs(estimate - reference) <= 1e-9 * reference
    # the reshaped-weight norm (torch's spectral_norm) is a different number
    reshaped = np.linalg.norm(conv.weight.detach().numpy().reshape(3, -1), 2)
    assert abs(reshaped - reference) > 1e-3 * reference


def test_depth_one_dncnn_is_a_convolution():
    torch.manual_seed(1)
    net = DnCNN(2, depth=1, kernel=3).double()
    x = torch.randn(3, 2, 6, 5, dtype=torch.float64)
    out = net(x).detach().numpy()
    weight, bias = net.convs[0].weight.detach().numpy(), net.convs[0].bias.detach().numpy()
    for b in range(3):
        reference = x[b].numpy() - correlate_same(x[b].numpy(), weight) - bias[:, None, None]
        np.testing.assert_allclose(out[b], reference, rtol=1e-12, atol=1e-12)


def test_noise_level_is_a_constant_input_channel():
    torch.manual_seed(2)
    net = DnCNN(1, depth=1, kernel=3, sigma="input").double()
    x = torch.randn(2, 1, 5, 5, dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.7], dtype=torch.float64)
    out = net(x, sigma).detach().numpy()
    weight, bias = net.convs[0].weight.detach().numpy(), net.convs[0].bias.detach().numpy()
    for b in range(2):
        stacked = np.stack([x[b, 0].numpy(), np.full((5, 5), float(sigma[b]))])
        reference = x[b].numpy() - correlate_same(stacked, weight) - bias[:, None, None]
        np.testing.assert_allclose(out[b], reference, rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match="sigma"):
        net(x)


@pytest.mark.parametrize("lipschitz", [0.5, 2.0])
def test_lipschitz_bound_holds_for_the_dense_operators_and_the_residual(lipschitz):
    torch.manual_seed(3)
    depth, h, w = 3, 5, 4
    net = DnCNN(1, width=3, depth=depth, kernel=3, lipschitz=lipschitz).double()
    for conv in net.convs:  # large weights: the normalisation must act
        with torch.no_grad():
            conv.conv.weight.mul_(10.0)
    net.eval()
    x = torch.randn(1, 1, h, w, dtype=torch.float64)
    net(x)  # sizes the persistent vectors
    c = lipschitz ** (1.0 / depth)
    # power iteration approaches the norm from below: after the warm-up the estimate is within 1e-4 here
    for conv in net.convs:
        effective = conv.effective_weight(h, w).detach().numpy()
        norm = np.linalg.norm(dense_operator(effective, h, w), 2)
        assert norm <= c * (1 + 1e-4)
        assert norm >= c * (1 - 1e-3)  # normalised to the bound, not far below it
    assert net.lipschitz_bound(h, w) <= lipschitz * (1 + 3e-4)
    # the Jacobian of R at random points has norm ≤ L
    for seed in range(3):
        point = torch.randn(1, 1, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        jac = torch.autograd.functional.jacobian(lambda v: net.residual(v), point).reshape(h * w, h * w)
        assert np.linalg.norm(jac.numpy(), 2) <= lipschitz * (1 + 3e-4)


def test_training_refines_the_persistent_vector_and_state_dict_round_trips():
    torch.manual_seed(4)
    net = DnCNN(1, width=4, depth=2, lipschitz=1.0).double()
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    net.train()
    net(x)
    first = net.convs[0].u.clone()
    net(x)
    assert torch.equal(first, net.convs[0].u)  # the same weights: the same normalisation (checkpointing)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net(x).square().sum().backward()
    optimizer.step()
    net(x)
    assert not torch.equal(first, net.convs[0].u)  # one power iteration after each change of the weights
    net.eval()
    before = net.convs[0].u.clone()
    net(x)
    assert torch.equal(before, net.convs[0].u)  # eval mode leaves it alone
    fresh = DnCNN(1, width=4, depth=2, lipschitz=1.0).double().eval()
    fresh.load_state_dict(net.state_dict())
    torch.testing.assert_close(fresh(x), net(x), rtol=0, atol=0)


def test_unet_shapes_zero_init_and_per_sample():
    torch.manual_seed(5)
    net = UNet(2, 3, width=4, levels=3).double()
    x = torch.randn(3, 2, 7, 10, dtype=torch.float64)  # not a multiple of 4: padded and cropped
    out = net(x)
    assert out.shape == (3, 3, 7, 10)
    torch.testing.assert_close(net(x[1:2]), out[1:2], rtol=1e-12, atol=1e-12)
    zero = UNet(1, 1, width=4, levels=2, init="zero").double()
    assert torch.count_nonzero(zero(x[:, :1])) == 0


def test_dncnn_rejects_bad_sizes():
    with pytest.raises(ValueError, match="out"):
        DnCNN(1, 2)
    with pytest.raises(ValueError, match="lipschitz"):
        DnCNN(1, lipschitz=-1.0)


def test_a_huge_size_from_an_int_hyperparameter_is_a_value_error():
    """An `int` hyperparameter sizing a net, given a huge value: a ValueError naming the size, not torch's
    overflow (a default beyond 64 bits is already a located error: tests/test_fuzz_findings.py)."""
    spec = SPEC.replace("hyper L = 0.9", "hyper L = 0.9\nhyper wide : int = 4").replace(
        "dncnn(in=1, width=4, depth=2, lipschitz=L)", "dncnn(in=1, width=wide, depth=2, lipschitz=L)")
    with pytest.raises(ValueError, match="`width` = .* is too large"):
        load_text(spec, "huge")(wide=10**12)


SPEC = '''
spec denoise "A denoiser of each kind"
dims h, w
hyper L = 0.9
input y : real[1, h, w]
net D : dncnn(in=1, width=4, depth=2, lipschitz=L)  learned shared
net E : dncnn(in=1, width=4, depth=2, sigma=input)  learned per_layer
net U : unet(in=1, out=1, width=4, levels=2, init=zero)  learned shared
state x : real[1, h, w] = y
layers 2
step:
    x = D(x) + U(x) + E(x, 0.1 * layer)
output x
'''


def test_generated_module_batches_and_round_trips():
    torch.manual_seed(6)
    cls = load_text(SPEC, "denoise")
    module = cls(dtype=torch.float64)
    y = torch.randn(3, 1, 5, 6, dtype=torch.float64)
    module.eval()
    out = module(y)
    assert out.shape == (3, 1, 5, 6)
    torch.testing.assert_close(module(y[1]), out[1], rtol=1e-12, atol=1e-12)
    assert module.D.convs[0].bound == pytest.approx(0.9 ** 0.5)
    again = cls(dtype=torch.float64).eval()
    again.load_state_dict(module.state_dict())
    torch.testing.assert_close(again(y), out, rtol=0, atol=0)
    with pytest.raises(ValueError, match="lipschitz"):
        cls(L=-1.0)


def test_checkpointed_backward_sees_the_same_normalisation():
    """Recomputing the forward (`--backward checkpoint`) does not advance the power iteration: the
    gradients equal those of the plain unrolled backward in training mode."""
    y = torch.randn(2, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    grads = {}
    for mode in ("unroll", "checkpoint:1"):
        torch.manual_seed(8)
        net = load_text(SPEC, "denoise", layers=3, backward=mode)(dtype=torch.float64, L=0.3)
        net.train()
        net(y).square().sum().backward()
        grads[mode] = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
    torch.testing.assert_close(grads["checkpoint:1"], grads["unroll"], rtol=1e-12, atol=1e-14)


def test_noise_level_per_sample_in_a_generated_module():
    """`D(x, s)` with s computed per sample (D-AMP's σ̂ = ‖z‖/√m): each sample sees its own level."""
    spec = '''
spec leveled "A conditioned denoiser with a per-sample noise level"
dims h, w
input y : real[1, h, w]
net D : dncnn(in=1, width=4, depth=2, sigma=input)  learned shared
state x : real[1, h, w] = y
layers 2
step:
    x = D(x, norm(x) / 5)
output x
'''
    torch.manual_seed(9)
    module = load_text(spec, "leveled")(dtype=torch.float64).eval()
    y = torch.randn(3, 1, 4, 5, dtype=torch.float64)
    out = module(y)
    for i in range(3):
        x = y[i:i + 1]
        for _ in range(2):
            x = module.D(x, torch.linalg.vector_norm(x) / 5)
        torch.testing.assert_close(out[i:i + 1], x, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(module(y[i]), x[0], rtol=1e-12, atol=1e-12)
