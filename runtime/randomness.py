"""Noise declarations (`noise b : real[n] ~ normal`): every module with noise owns a generator seeded
at construction (`seed=`); a noise not given to forward is drawn from it per sample (once per call,
or for every layer with `per_layer`).  Draws are made on the CPU in float64 and then converted, so a
seed gives the same numbers on every device and dtype.  The generator is neither a parameter nor a
buffer: `state_dict` and `repr` do not change."""

from __future__ import annotations

import torch

DISTRIBUTIONS = ("normal", "uniform", "rademacher")


def draw(distribution: str, shape: tuple, generator: torch.Generator, dtype, device) -> torch.Tensor:
    if distribution == "normal":
        values = torch.randn(shape, generator=generator, dtype=torch.float64)
    elif distribution == "uniform":
        values = torch.rand(shape, generator=generator, dtype=torch.float64)
    elif distribution == "rademacher":
        values = torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1
    else:
        raise ValueError(f"unknown distribution {distribution!r}; expected one of {DISTRIBUTIONS}")
    return values.to(dtype=dtype, device=device)


class NoiseMixin:
    """The generator of a module with noise, and the checking of noise given to forward."""

    noise_names: tuple = ()

    def _seed_noise(self, seed) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed: expected an integer, got {type(seed).__name__}")
        self.__dict__["noise_seed"] = seed
        self.__dict__["_noise_generator"] = torch.Generator().manual_seed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the noise generator from `seed`."""
        self._seed_noise(seed)

    def _noise_arg(self, name: str, value, shape: tuple, distribution: str, layers, batch: int, unbatched: bool,
                   dtype, device):
        """The noise `name`: the tensor given to forward (checked), or a draw of shape [batch, (layers,) *shape]."""
        full = (batch,) + ((layers,) if layers else ()) + tuple(int(s) for s in shape)
        if value is None:
            return draw(distribution, full, self.__dict__["_noise_generator"], dtype, device)
        if not torch.is_tensor(value):
            try:
                value = torch.as_tensor(value, dtype=dtype)
            except Exception as err:  # noqa: BLE001 - report the conversion problem clearly
                raise TypeError(f"{name}: cannot convert {type(value).__name__} to a tensor ({err})") from None
        if not value.is_floating_point():
            raise TypeError(f"{name}: expected a real floating-point tensor, got {value.dtype}")
        if value.device != torch.device(device):
            raise ValueError(f"{name}: tensor on {value.device}, but the inputs are on {device}")
        if unbatched and tuple(value.shape) == full[1:]:
            value = value.unsqueeze(0)
        if tuple(value.shape) != full:
            what = (f"[batch, layers, ...] = {list(full)}" if layers else f"[batch, ...] = {list(full)}")
            raise ValueError(f"{name}: expected the noise of shape {what}"
                             + (f" (or {list(full[1:])} for one sample)" if unbatched else "")
                             + f", got {list(value.shape)}")
        return value.to(dtype)
