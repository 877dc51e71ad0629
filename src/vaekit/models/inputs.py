"""The models' data boundary: numpy arrays, lists or tensors in, a checked float batch out.

Public model methods (encode, decode, elbo, log_likelihood, reconstruct, complete) pass what a user
hands them through here once, so a wrong shape, dtype or value range gets a DataError saying what
to do instead of an error from deep inside torch. The conventions are the data loaders': uint8 holds
8-bit values 0..255 (divided by 255), float holds values as the model saw them in training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vaekit.data.transforms import to_unit
from vaekit.errors import DataError

_SHOWN = 5  # offending rows named in a message


def as_tensor(value: Any, name: str) -> torch.Tensor:
    """A tensor from a tensor, numpy array or (nested) list, refusing non-numeric dtypes."""
    if isinstance(value, torch.Tensor):
        t = value
    else:
        try:
            a = np.asarray(value)
        except (ValueError, TypeError) as e:
            raise DataError(f"{name} cannot be read as an array ({e})",
                            f"pass {name} as a numpy array or a torch tensor") from None
        if a.dtype.kind not in "biuf":
            raise DataError(f"{name} has dtype {a.dtype}, which is not numeric",
                            f"pass {name} as uint8 (0..255), bool, or float values")
        t = torch.from_numpy(np.array(a, copy=True) if not a.flags.writeable else a)
    if t.is_complex():
        raise DataError(f"{name} has complex dtype {t.dtype}", f"pass real values for {name}")
    return t


def _bad_rows(mask: torch.Tensor) -> str:
    rows = mask.reshape(mask.shape[0], -1).any(1).nonzero().flatten()
    return f"rows {rows[:_SHOWN].tolist()} ({len(rows)} in all)"


def _channels_first(x: torch.Tensor, event_shape: tuple[int, ...]) -> torch.Tensor:
    """Images in the other layouts the data loaders accept, [B, H, W] (one channel) and
    [B, H, W, C], as [B, C, H, W]."""
    if len(event_shape) != 3:
        return x
    c, h, w = event_shape
    if c == 1 and x.dim() == 3 and tuple(x.shape[1:]) == (h, w):
        return x[:, None]
    if x.dim() == 4 and tuple(x.shape[1:]) == (h, w, c) and (h, w) != (w, c):
        return x.permute(0, 3, 1, 2)
    return x


def as_batch(value: Any, event_shape: tuple[int, ...], like: torch.Tensor, unit_interval: bool,
             name: str = "x") -> torch.Tensor:
    """A float batch [B, *event_shape] on the device and in the dtype of ``like`` (a model parameter)
    from user data, checked: shape, dtype,
    finiteness, and (``unit_interval``: Bernoulli, discretized likelihoods) values in [0, 1]."""
    x = _channels_first(as_tensor(value, name), tuple(event_shape))
    want = "[B, " + ", ".join(map(str, event_shape)) + "]"
    if tuple(x.shape) == tuple(event_shape):
        raise DataError(f"{name} has shape {tuple(x.shape)}: one example without the batch axis; the "
                        f"model takes {want}", f"add the batch axis, e.g. {name}[None]")
    if x.dim() != len(event_shape) + 1 or tuple(x.shape[1:]) != tuple(event_shape):
        raise DataError(f"{name} has shape {tuple(x.shape)}; the model takes {want} (B examples of shape "
                        f"{tuple(event_shape)})", f"reshape {name} to {want}, as in the training data")
    if x.dtype == torch.bool:
        x = x.float()
    elif x.dtype == torch.uint8:
        x = to_unit(x)
    elif not x.is_floating_point():
        if bool(((x != 0) & (x != 1)).any()):
            raise DataError(f"{name} is {x.dtype} with values other than 0 and 1",
                            f"pass 8-bit values as uint8 (0..255), or {name} as float")
        x = x.float()
    x = x.to(device=like.device, dtype=like.dtype)
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        raise DataError(f"{name} has NaN or infinite values in {_bad_rows(bad)}",
                        "drop or repair those rows")
    if unit_interval:
        out = (x < 0) | (x > 1)
        if bool(out.any()):
            lo, hi = float(x.min()), float(x.max())
            raise DataError(f"{name} spans [{lo:g}, {hi:g}] in {_bad_rows(out)}; this model's likelihood "
                            "takes values in [0, 1]",
                            "divide 8-bit values by 255 (or pass them as uint8)" if hi <= 255 and lo >= 0
                            else f"rescale {name} to [0, 1] as the training data was")
    return x


def as_latents(value: Any, latent_dim: int, like: torch.Tensor, name: str = "z") -> torch.Tensor:
    """A batch of latents [N, latent_dim], finite, on the device and in the dtype of ``like``."""
    z = as_tensor(value, name)
    if z.dim() != 2 or z.shape[1] != latent_dim:
        fix = f"add the batch axis, e.g. {name}[None]" if z.dim() == 1 and len(z) == latent_dim else (
            f"pass {name} as [N, {latent_dim}]")
        raise DataError(f"{name} has shape {tuple(z.shape)}; the model's latents are [N, {latent_dim}]", fix)
    z = z.to(device=like.device, dtype=like.dtype)
    bad = ~torch.isfinite(z)
    if bool(bad.any()):
        raise DataError(f"{name} has NaN or infinite values in {_bad_rows(bad)}", f"pass finite {name}")
    return z


def host_reads_allowed(t: torch.Tensor) -> bool:
    """False while torch.compile traces or a CUDA graph captures: a check that reads ``t`` on the host
    cannot run there (the training labels are checked once, when the session is built)."""
    return not torch.compiler.is_compiling() and not (t.is_cuda and torch.cuda.is_current_stream_capturing())


def as_labels(value: Any, n: int, num_classes: int, device: torch.device, name: str = "y") -> torch.Tensor:
    """Class indices [n] (a single label is repeated) in 0..num_classes-1, as int64 on ``device``."""
    y = as_tensor(value, name)
    if y.is_floating_point():
        if not bool((torch.isfinite(y) & (y == y.round())).all()):
            raise DataError(f"{name} holds non-integer labels", f"pass class indices 0..{num_classes - 1}")
    if y.dim() == 0:
        y = y.expand(n)
    if y.dim() != 1 or len(y) != n:
        raise DataError(f"{name} has shape {tuple(y.shape)} for {n} examples",
                        f"pass one class index per example, shape ({n},), or a single label")
    y = y.to(device=device, dtype=torch.long)
    if len(y) and host_reads_allowed(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        found = f"{int(y.min())}..{int(y.max())}"
        raise DataError(f"{name} has labels outside 0..{num_classes - 1} (found {found})",
                        f"pass class indices 0..{num_classes - 1}")
    return y
