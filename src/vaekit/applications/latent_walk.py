"""Walking the latent space: paths between two codes, and traversals that move one unit at a time.

Interpolation (``interpolate_latents``): ``linear`` is (1 - t) a + t b; ``slerp`` (Shoemake 1985;
White 2016 for generative models) is sin((1-t) w)/sin w a + sin(t w)/sin w b with cos w = <a, b> /
(|a| |b|). Why slerp: under a d-dimensional N(0, I) prior |z| concentrates at sqrt(d) (spread about
1/sqrt 2, whatever d), so the linear midpoint of two typical codes, nearly orthogonal in high
dimensions, has norm about sqrt(d / 2): a shell the prior almost never visits, where decodings tend to
look faint or averaged. Slerp between ends of equal norm keeps that norm all the way, and between
unequal norms stays near their shell. Parallel ends, or a zero end, leave no great circle: slerp is
then the straight line.

Traversal (``traversal_codes``): row r moves unit ``dims[r]`` over center + t * scale for t evenly
from -range to +range, the unit's prior mean and standard deviation (``prior_axes``), with every
other unit at the base point (the prior mean, or an example's posterior mean): the values along a row
are the same whatever the base, so rows and bases compare column by column. What "prior mean and
standard deviation" are:

- standard normal prior: 0 and 1.
- mixture priors (``mog``, ``vamp``): the mixture's marginal moments per unit, in closed form: mean
  sum_k w_k mu_k, variance sum_k w_k (sigma_k^2 + mu_k^2) - mean^2. The range then spans the
  mixture's spread along the unit, across several modes where it has them, and the base point (the
  mixture mean) may lie between modes.
- any other prior (a plugin): the moments of ``MOMENT_DRAWS`` seeded prior draws.
- the hierarchical model: only the top layer z_L, whose prior is N(0, I), is traversed; each layer
  below follows as the mean of p(z_l | z_>l) given the layers above (``TopDown.mean_below``), so an
  image is the model's mean decoding of that top-layer code. A lower layer's prior moves with the
  layers above, so its units have no fixed mean and standard deviation to step in, and are not offered.

The rows come ordered by ``dimension_activity`` (mean KL per unit in nats; Var_x E_q[z_i|x] where the
KL has no per-unit parts: mixture priors, flow posteriors).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn as nn

from vaekit.errors import ConfigError, DataError
from vaekit.models.hierarchical import TopDown
from vaekit.models.importance import model_device
from vaekit.parts.priors import MixturePrior, StandardNormal

PATHS = ("linear", "slerp")
MOMENT_DRAWS = 10_000
ACTIVITY_EXAMPLES = 5000  # the traversal's KL order is taken over at most this many examples
DIMS_HELP = "top:N (the N units with the most KL, most first) or a comma list of units, e.g. 0,3,5"


def require_images(model: nn.Module, what: str) -> None:
    """Refuse a model whose examples are not images [C, H, W] with 1 or 3 channels."""
    shape = tuple(model.event_shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise DataError(f"{what} works on images, and this run's examples have shape {shape}",
                        "use a run trained on image data (1 or 3 channels)")


def interpolate_latents(za: torch.Tensor, zb: torch.Tensor, steps: int, path: str) -> torch.Tensor:
    """[steps, d] codes from ``za`` to ``zb`` [d], both ends included, along ``path`` (see the module
    docstring: linear, or slerp with the straight line where the ends leave no great circle)."""
    if steps < 2:
        raise ConfigError(f"the path needs at least 2 steps (its two ends), got {steps}",
                          "give e.g. --steps 10")
    if path not in PATHS:
        raise ConfigError(f"unknown path {path!r}", f"use one of: {', '.join(PATHS)}")
    t = torch.linspace(0, 1, steps, dtype=torch.float64)[:, None]
    a, b = za.double(), zb.double()
    if path == "slerp":
        na, nb = a.norm(), b.norm()
        if na > 0 and nb > 0:
            omega = torch.arccos(torch.clamp((a @ b) / (na * nb), -1.0, 1.0))
            s = torch.sin(omega)
            if s > 1e-6:
                return (torch.sin((1 - t) * omega) / s * a + torch.sin(t * omega) / s * b).float()
    return ((1 - t) * a + t * b).float()


@dataclass
class Axes:
    """The traversable units, the first ``units`` entries of a latent vector, with each one's prior
    mean ``center`` and standard deviation ``scale`` [units] (float64), and a sentence saying what one
    step of range is for this model."""

    units: int
    center: torch.Tensor
    scale: torch.Tensor
    meaning: str


@torch.no_grad()
def prior_axes(model: nn.Module, seed: int = 0) -> Axes:
    """The units a traversal moves and the prior mean and standard deviation it steps in (module
    docstring); ``seed`` seeds the draws of a prior without closed-form moments."""
    prior = model.prior
    if isinstance(prior, TopDown):
        d = prior.latent_dims[0]
        return Axes(d, torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64),
                    "top-layer units, in standard deviations of their N(0, 1) prior; the layers below follow "
                    "as their prior means")
    d = model.latent_dim
    if isinstance(prior, StandardNormal):
        return Axes(d, torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64),
                    "standard deviations of the N(0, 1) prior")
    if isinstance(prior, MixturePrior):
        comp, w = prior.components(), prior.log_weights().exp().double()[:, None]
        mu, sigma = comp.loc.double(), comp.scale.double()
        center = (w * mu).sum(0)
        var = (w * (sigma**2 + mu**2)).sum(0) - center**2
        return Axes(d, center.cpu(), var.clamp(min=0).sqrt().cpu(),
                    "marginal standard deviations of the mixture prior around its mean")
    z = prior.sample(MOMENT_DRAWS, generator=torch.Generator(model_device(model)).manual_seed(seed)).double()
    return Axes(d, z.mean(0).cpu(), z.std(0).cpu(),
                f"standard deviations of the prior, estimated from {MOMENT_DRAWS:,} draws")


def order_dims(activity: torch.Tensor, spec: str) -> list[int]:
    """The units a traversal shows, from ``spec`` (``DIMS_HELP``): ``top:N`` takes the N most active
    units of ``activity`` [units] (all of them when there are fewer), most active first, ties in unit
    order; a list keeps its own order."""
    units = activity.shape[0]
    top = re.fullmatch(r"\s*top:(\d+)\s*", spec)
    if top:
        n = int(top.group(1))
        if n < 1:
            raise ConfigError(f"--dims {spec!r} asks for no unit", "give e.g. --dims top:8")
        order = torch.sort(-activity.double(), stable=True).indices
        return [int(i) for i in order[:n]]
    try:
        dims = [int(part) for part in spec.split(",")]
    except ValueError:
        raise ConfigError(f"--dims {spec!r} is neither top:N nor a list of units", DIMS_HELP) from None
    bad = [i for i in dims if not 0 <= i < units]
    if bad:
        raise ConfigError(f"--dims names units {bad}, and the traversable units are 0..{units - 1}",
                          "give units in that range, or --dims top:N")
    if len(set(dims)) != len(dims):
        raise ConfigError(f"--dims {spec!r} names a unit twice", "list each unit once")
    return dims


def traversal_codes(
    base: torch.Tensor, dims: list[int], axes: Axes, span: float, steps: int
) -> torch.Tensor:
    """[len(dims), steps, units] codes: row r is ``base`` [units] with unit dims[r] set to center + t *
    scale for t = -span .. span in ``steps`` even steps (``axes``)."""
    if steps < 2:
        raise ConfigError(f"a traversal needs at least 2 steps, got {steps}", "give e.g. --steps 9")
    if not (math.isfinite(span) and span > 0):
        raise ConfigError(f"--range must be a positive number of prior standard deviations, got {span}",
                          "give e.g. --range 3")
    t = torch.linspace(-span, span, steps, dtype=torch.float64)
    codes = base.double().expand(len(dims), steps, axes.units).clone()
    for r, i in enumerate(dims):
        codes[r, :, i] = axes.center[i] + t * axes.scale[i]
    return codes


@torch.no_grad()
def full_codes(model: nn.Module, codes: torch.Tensor) -> torch.Tensor:
    """Complete latents [N, latent_dim] for traversal codes [N, units]: the codes themselves, or for
    the hierarchical model the top layer with the layers below at their prior means."""
    codes = codes.to(model_device(model), torch.float32)
    if isinstance(model.prior, TopDown):
        return model.prior.mean_below(codes)
    return codes


@torch.no_grad()
def base_point(model: nn.Module, axes: Axes, x: torch.Tensor | None = None,
               y: torch.Tensor | None = None) -> torch.Tensor:
    """The point a traversal starts from [units]: the prior mean, or the traversable units of the
    posterior mean of the one example ``x`` [1, *event]."""
    if x is None:
        return axes.center.clone()
    return model.encode(x, y).mean[0, : axes.units].double().cpu()


@torch.no_grad()
def decode_means(model: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Likelihood means E[x | z] for latents [N, latent_dim] (``y``: one label for all, conditional
    models)."""
    labels = None if y is None else y.reshape(-1)[:1].expand(z.shape[0])
    return model.decode(z, labels).mean


@torch.no_grad()
def traverse(
    model: nn.Module, dims: list[int], base: torch.Tensor, axes: Axes, span: float, steps: int,
    y: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The traversal's latents [len(dims), steps, latent_dim] (``traversal_codes`` completed by
    ``full_codes``) and their decodings [len(dims), steps, *event]."""
    z = full_codes(model, traversal_codes(base, dims, axes, span, steps).reshape(-1, axes.units))
    images = decode_means(model, z, y)
    return z.reshape(len(dims), steps, -1), images.reshape(len(dims), steps, *images.shape[1:])


__all__ = [
    "ACTIVITY_EXAMPLES", "DIMS_HELP", "MOMENT_DRAWS", "PATHS", "Axes", "base_point", "decode_means",
    "full_codes", "interpolate_latents", "order_dims", "prior_axes", "require_images", "traversal_codes",
    "traverse",
]
