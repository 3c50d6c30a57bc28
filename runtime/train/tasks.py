"""Training tasks: ready synthetic problems from the catalog, and a user's own tensors or DataLoader.

A `Task` knows how to build a network for a spec (the constructor's data and hyperparameters), how to
draw training batches, a fixed validation set and a fixed test set, which network value each target is
compared with (an output or a state name), the default losses and the headline metric.

    sparse_coding     Chen et al. (NeurIPS 2018): A 250x500 Gaussian, unit columns; x Bernoulli(0.1)·N(0,1);
                      y = A x (noiseless) or SNR 40 dB  -> lista, lista_cp, lista_cpss, ista, fista, ...
    compressive_mri   piecewise-constant 32x32 images, random k-space mask (DC sampled) -> admm_csnet
    blind_deblur      piecewise-constant images blurred by random Gaussian kernels     -> dublid
    nmf_separation    mixtures of two nonnegative sources with their own bases          -> deep_nmf
    from_tensors / from_loader   the user's own data
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Batch = tuple  # (inputs: dict[str, Tensor], targets: dict[str, Tensor])


@dataclass
class Task:
    name: str
    description: str
    spec: str  # a shipped spec this task fits
    arguments: dict  # constructor arguments of the network (data tensors and hyperparameters)
    losses: dict  # target name -> loss name or callable (pred, target) -> 0-d tensor
    metric: str = "nmse_db"  # headline metric on the first target
    sampler: Callable | None = None  # (count, generator) -> Batch: fresh synthetic samples
    train_set: Batch | None = None  # fixed training set (user tensors)
    loader: object = None  # a user DataLoader yielding (inputs, targets) pairs
    validation: Batch | None = None
    test: Batch | None = None
    seed: int = 0
    info: dict = field(default_factory=dict)

    @property
    def targets(self) -> list[str]:
        return list(self.losses)

    def build(self, Net, dtype=torch.float32, device="cpu", **overrides):
        """An instance of the generated class `Net` for this task: the constructor arguments it accepts."""
        accepted = inspect.signature(Net.__init__).parameters
        args = {**self.arguments, **overrides}
        missing = [n for n, p in accepted.items() if n != "self" and p.default is inspect.Parameter.empty
                   and n not in args]
        if missing:
            raise ValueError(f"task `{self.name}` does not fit spec `{Net.spec_name}`: the network needs "
                             f"{', '.join(missing)}, the task provides {', '.join(sorted(args)) or 'nothing'} "
                             f"(the task is made for `{self.spec}`)")
        for name in self.targets:
            if name not in Net.output_names and name not in Net.state_names:
                raise ValueError(f"task `{self.name}` trains the value `{name}`, which spec `{Net.spec_name}` "
                                 f"neither outputs nor keeps as a state (outputs {Net.output_names})")
        kwargs = {k: _convert(v, dtype, device) for k, v in args.items() if k in accepted}
        return Net(**kwargs), kwargs

    def batches(self, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        """An endless iterator of training batches (fresh samples for a synthetic task; reshuffled passes
        over the training set otherwise).  Under DDP each rank draws its own samples."""
        if self.sampler is not None:
            gen = torch.Generator().manual_seed(seed * 1000 + 17 + rank)
            while True:
                yield self.sampler(batch_size, gen)
        elif self.train_set is not None:
            inputs, targets = self.train_set
            count = _count(inputs)
            gen = torch.Generator().manual_seed(seed * 1000 + 23)
            while True:
                order = torch.randperm(count, generator=gen)[rank::world]
                for start in range(0, len(order) - batch_size + 1, batch_size):
                    idx = order[start:start + batch_size]
                    yield ({k: v[idx] for k, v in inputs.items()}, {k: v[idx] for k, v in targets.items()})
        else:
            epoch = 0
            while True:
                sampler = getattr(self.loader, "sampler", None)
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch)
                for item in self.loader:
                    yield _as_batch(item, self.info)
                epoch += 1

    def epoch_steps(self, batch_size: int, world: int = 1) -> int | None:
        """Steps in one pass over the training data (None for a synthetic task)."""
        if self.train_set is not None:
            return max(1, _count(self.train_set[0]) // world // batch_size)
        if self.loader is not None:
            return len(self.loader)
        return None


def _convert(value, dtype, device):
    if torch.is_tensor(value):
        target = value.dtype
        if value.is_floating_point():
            target = dtype
        elif value.is_complex():
            target = torch.complex64 if dtype == torch.float32 else torch.complex128
        return value.to(device=device, dtype=target)
    return value


def _count(inputs: dict) -> int:
    return next(iter(inputs.values())).shape[0]


def _as_batch(item, info) -> Batch:
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], dict):
        return item[0], item[1]
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return {info["input"]: item[0]}, {info["target"]: item[1]}
    raise TypeError("from_loader: the DataLoader must yield (input, target) pairs or (inputs dict, targets dict)")


def convert_batch(batch: Batch, dtype, device) -> Batch:
    inputs, targets = batch
    return ({k: _convert(v, dtype, device) for k, v in inputs.items()},
            {k: _convert(v, dtype, device) for k, v in targets.items()})


# ---------------------------------------------------------------------------------------------- sparse coding
def sparse_coding(n: int = 250, m: int = 500, p: float = 0.1, snr_db: float | None = None, lam: float = 0.4,
                  validation: int = 1000, test: int = 1000, seed: int = 0) -> Task:
    """Chen, Liu, Wang, Yin (NeurIPS 2018), as in their LISTA-CP/CPSS code: A n×m with N(0, 1/n) entries and
    unit-norm columns; codes x with Bernoulli(p)·N(0, 1) entries; y = A x, plus white Gaussian noise at
    `snr_db` (None: noiseless).  `lam` sets the initial thresholds (θ = lam / ‖A‖², their default 0.4)."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(n, m, generator=gen, dtype=torch.float64) / math.sqrt(n)
    A = A / torch.linalg.vector_norm(A, dim=0, keepdim=True)

    def sample(count, generator):
        x = torch.randn(count, m, generator=generator, dtype=torch.float64)
        x = x * (torch.rand(count, m, generator=generator, dtype=torch.float64) < p)
        y = x @ A.T
        if snr_db is not None:
            std = math.sqrt(float(y.square().mean()) / 10 ** (snr_db / 10))
            y = y + std * torch.randn(y.shape, generator=generator, dtype=torch.float64)
        return {"y": y}, {"x": x}

    held = torch.Generator().manual_seed(seed + 1)
    name = "sparse_coding" + ("" if snr_db is None else f"_snr{snr_db:g}")
    return Task(name, f"sparse coding, A {n}x{m}, Bernoulli({p})-Gaussian codes, "
                f"{'noiseless' if snr_db is None else f'SNR {snr_db:g} dB'}", "lista_cp",
                {"A": A, "lam": lam}, {"x": "sq_error"}, "nmse_db", sample,
                validation=sample(validation, held), test=sample(test, held), seed=seed)


# ---------------------------------------------------------------------------------------------- images
def _phantoms(count, size, generator, shapes=5):
    """Piecewise-constant images in [0, 1]: a sum of random rectangles and ellipses."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    images = torch.zeros(count, size, size, dtype=torch.float64)
    for _ in range(shapes):
        c = torch.rand(count, 2, generator=generator, dtype=torch.float64) * size
        r = (0.1 + 0.25 * torch.rand(count, 2, generator=generator, dtype=torch.float64)) * size
        value = 0.2 + 0.8 * torch.rand(count, 1, 1, generator=generator, dtype=torch.float64)
        dy = (yy - c[:, 0, None, None]) / r[:, 0, None, None]
        dx = (xx - c[:, 1, None, None]) / r[:, 1, None, None]
        ellipse = (dy.square() + dx.square() <= 1)
        box = (dy.abs() <= 1) & (dx.abs() <= 1)
        pick = torch.rand(count, 1, 1, generator=generator) < 0.5
        images = torch.where(torch.where(pick, ellipse, box), value, images)
    return images


def _difference_filters(s: int = 3) -> torch.Tensor:
    d = torch.zeros(2, s, s, dtype=torch.float64)
    c = (s - 1) // 2
    d[0, c, c], d[0, c, c + 1] = -1.0, 1.0
    d[1, c, c], d[1, c + 1, c] = -1.0, 1.0
    return d


def compressive_mri(size: int = 32, rate: float = 0.3, validation: int = 64, test: int = 64, seed: int = 0) -> Task:
    """Compressive MRI (ADMM-CSNet, catalog B2): x a piecewise-constant size×size image, y = M ⊙ F_u x with a
    random 0/1 k-space mask M sampling a fraction `rate` (the DC coefficient always), F_u the unitary DFT.
    Loss: squared error; headline metric PSNR (peak 1)."""
    gen = torch.Generator().manual_seed(seed)
    mask = (torch.rand(size, size, generator=gen, dtype=torch.float64) < rate).to(torch.float64)
    mask[0, 0] = 1.0

    def sample(count, generator):
        x = _phantoms(count, size, generator)
        y = mask * torch.fft.fft2(x.to(torch.complex128), norm="ortho")
        return {"y": y}, {"x": x}

    held = torch.Generator().manual_seed(seed + 1)
    return Task("compressive_mri", f"compressive MRI, {size}x{size} phantoms, {rate:.0%} random k-space samples",
                "admm_csnet", {"mask": mask, "d0": _difference_filters()}, {"x": "sq_error"}, "psnr", sample,
                validation=sample(validation, held), test=sample(test, held), seed=seed)


def blind_deblur(size: int = 32, kernel: int = 5, noise: float = 0.01, validation: int = 64, test: int = 64,
                 seed: int = 0) -> Task:
    """Blind deblurring (DUBLID, catalog B5): y = k ∗ x + n, circular convolution, x piecewise constant in
    [0, 1], k a random anisotropic Gaussian on a kernel×kernel support (sum 1), n white noise.  Targets:
    the image x and the kernel estimate ks, both with the translation-invariant MSE."""
    c = (kernel - 1) // 2
    grid = torch.arange(kernel, dtype=torch.float64) - c

    def sample(count, generator):
        from unroll.runtime.ops import pad_kernel

        x = _phantoms(count, size, generator)
        sig = 0.5 + 1.0 * torch.rand(count, 2, generator=generator, dtype=torch.float64)
        k = torch.exp(-grid[None, :, None].square() / (2 * sig[:, 0, None, None] ** 2)
                      - grid[None, None, :].square() / (2 * sig[:, 1, None, None] ** 2))
        k = k / k.sum((-2, -1), keepdim=True)
        K = torch.fft.fft2(pad_kernel(k, size, size))
        y = torch.fft.ifft2(K * torch.fft.fft2(x)).real
        y = y + noise * torch.randn(y.shape, generator=generator, dtype=torch.float64)
        return {"y": y}, {"x": x, "ks": k}

    dirac = torch.zeros(kernel, kernel, dtype=torch.float64)
    dirac[c, c] = 1.0
    held = torch.Generator().manual_seed(seed + 1)
    return Task("blind_deblur", f"blind deblurring, {size}x{size} phantoms, random Gaussian {kernel}x{kernel} kernels, "
                f"noise {noise:g}", "dublid", {"f0": _difference_filters(), "k0": dirac},
                {"x": "ti_mse", "ks": "ti_mse"}, "psnr", sample,
                validation=sample(validation, held), test=sample(test, held), seed=seed)


def nmf_separation(freqs: int = 32, frames: int = 16, bases: int = 4, density: float = 0.3, mismatch: float = 0.3,
                   validation: int = 128, test: int = 128, seed: int = 0) -> Task:
    """NMF source separation (deep NMF, catalog D3): two sources, each with `bases` nonnegative spectral
    bases; the mixture M = W₁H₁ + W₂H₂ with sparse nonnegative activations.  The network starts from
    bases perturbed by `mismatch` (relative) and learns per-layer bases; the target is the activations
    H = [H₁; H₂], whose blocks give the source estimates Ŝⱼ = Wⱼ Ĥⱼ."""
    gen = torch.Generator().manual_seed(seed)
    K = 2 * bases
    f = torch.arange(freqs, dtype=torch.float64)
    centres = torch.rand(K, generator=gen, dtype=torch.float64) * freqs
    widths = 1.0 + 3.0 * torch.rand(K, generator=gen, dtype=torch.float64)
    W = torch.exp(-(f[:, None] - centres[None, :]).square() / (2 * widths.square())) + 0.01
    W = W / torch.linalg.vector_norm(W, dim=0, keepdim=True)
    W0 = W * torch.exp(mismatch * torch.randn(W.shape, generator=gen, dtype=torch.float64))

    def sample(count, generator):
        H = torch.rand(count, K, frames, generator=generator, dtype=torch.float64) * 2
        H = H * (torch.rand(count, K, frames, generator=generator, dtype=torch.float64) < density)
        M = W @ H + 1e-3
        return {"M": M}, {"H": H}

    held = torch.Generator().manual_seed(seed + 1)
    return Task("nmf_separation", f"NMF separation of 2 sources x {bases} bases, {freqs}x{frames} spectrograms",
                "deep_nmf", {"W": W0, "beta": 1.0}, {"H": "sq_error"}, "nmse_db", sample,
                validation=sample(validation, held), test=sample(test, held), seed=seed,
                info={"true_bases": W})


# ---------------------------------------------------------------------------------------------- user data
def from_tensors(inputs, targets, arguments: dict, validation=None, test=None, losses=None, metric="nmse_db",
                 spec: str = "", name: str = "tensors") -> Task:
    """A task on the user's tensors: `inputs` and `targets` are dicts {name: tensor [count, ...]} (input
    names of the spec; target names of its outputs or states); `arguments` are the network's constructor
    arguments.  validation/test: (inputs, targets) pairs of the same form (default: the last 10 % of the
    training set is held out for validation)."""
    inputs, targets = dict(inputs), dict(targets)
    count = _count(inputs)
    if validation is None:
        hold = max(1, count // 10)
        validation = ({k: v[-hold:] for k, v in inputs.items()}, {k: v[-hold:] for k, v in targets.items()})
        inputs = {k: v[:-hold] for k, v in inputs.items()}
        targets = {k: v[:-hold] for k, v in targets.items()}
    losses = losses or {k: "sq_error" for k in targets}
    return Task(name, f"user tensors ({count} samples)", spec, arguments, losses, metric, train_set=(inputs, targets),
                validation=validation, test=test or validation)


def from_loader(loader, validation, arguments: dict, input_name: str = "y", target_name: str = "x", losses=None,
                metric="nmse_db", test=None, spec: str = "", name: str = "loader") -> Task:
    """A task on a user DataLoader yielding (input, target) pairs (named by input_name/target_name) or
    (inputs dict, targets dict) pairs; `validation` is an (inputs dict, targets dict) pair."""
    losses = losses or {target_name: "sq_error"}
    return Task(name, "user DataLoader", spec, arguments, losses, metric, loader=loader, validation=validation,
                test=test or validation, info={"input": input_name, "target": target_name})


TASKS = {
    "sparse_coding": lambda: sparse_coding(),
    "sparse_coding_snr40": lambda: sparse_coding(snr_db=40.0),
    "sparse_coding_small": lambda: sparse_coding(n=20, m=50, p=0.1, validation=200, test=200),
    "compressive_mri": compressive_mri,
    "blind_deblur": blind_deblur,
    "nmf_separation": nmf_separation,
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return TASKS[name]()


__all__ = [
    "TASKS",
    "Task",
    "blind_deblur",
    "compressive_mri",
    "convert_batch",
    "from_loader",
    "from_tensors",
    "get_task",
    "nmf_separation",
    "sparse_coding",
]
