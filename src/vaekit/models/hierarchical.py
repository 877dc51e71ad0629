"""Hierarchical VAE with top-down inference (LVAE, Sonderby et al. 2016; the ResNet VAE of the IAF
paper, Kingma et al. 2016; NVAE, Vahdat & Kautz 2020).

L stochastic layers, z_L at the top (sampled first) down to z_1 next to x. A deterministic state s
carries what has been sampled so far down the layers, and the decoder reads the last state:

    s_L = 0,                          s_{l-1} = s_l + A_l [act(s_l), z_l],      x ~ p(x | s_0)
    p(z_L) = N(0, I),                 p(z_l | z_>l) = N(mu_l(s_l), sigma_l(s_l)^2)   (a small MLP)
    q(z_l | z_>l, x) = N(mu_l + dmu_l, (sigma_l * dsigma_l)^2),  (dmu_l, dsigma_l) = B_l [s_l, d_l(x)]

The posterior walks the prior's own path and is parameterized relative to it (NVAE's residual
form), so per layer KL(q_l || p_l) = sum_i 0.5 (dmu_i^2 / sigma_i^2 + dsigma_i^2 - 1) - log dsigma_i,
given the layers above. Bottom-up features: d_1 = backbone(x) (by default the ResNet, any image size),
d_{l+1} = d_l + f_l(d_l). A latent vector is z = [z_L, ..., z_1] (sampling order, as in
``model.latent_dims``); the top-down path is the model's prior p(z), so ``sample``, ``elbo`` and the
importance-sampled ``log_likelihood`` are the plain VAE's.

Below the vector layers, optional map layers (``model.latent_channels``; NVAE's spatial latents)
hold c latent channels at every position of the decoder's first feature map (its smallest, H x W
floored by half per stride-2 stage: ``vaekit.nets.feature_map_size``): the state is expanded
to that map, the same three maps become 3x3 convolutions, the posterior reads the bottom-up tower's
last feature map, and the decoder's convolutional body reads the final state map.

The state updates A_l and posterior heads B_l are single linear maps, so with one layer the model is
the plain VAE up to a linear reparameterization. The towers' layers start from He initialization
(Kaiming normal) instead of PyTorch's default, which shrinks a signal's variance about threefold per
layer, so the decoder's output depends on z from the start; the heads and updates, which no
activation follows, start at unit gain. The top state s_L is zero, not learned: a learned constant
read by every head acts, under Adam, as a bias with hundreds of times the learning rate, and the
posterior then snaps onto the prior within a hundred steps (KL -> 0) before the decoder uses z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Distribution, constraints, kl_divergence

from vaekit.config import PartConfig, part, require, require_sizes
from vaekit.errors import ConfigError
from vaekit.models.vae import VAE, label_classes
from vaekit.nets import build_nets
from vaekit.nets.mlp import ACTIVATIONS, mlp
from vaekit.parts.distributions import DiagonalGaussian, log_prob_repeated
from vaekit.parts.likelihoods import Likelihood, build_likelihood
from vaekit.parts.output import Output
from vaekit.parts.priors import Prior
from vaekit.registry import register
from vaekit.schema import DataSchema

# softplus(SOFTPLUS_ONE) = 1: a zero residual leaves the posterior equal to the prior
SOFTPLUS_ONE = math.log(math.e - 1)
MIN_SCALE_RATIO = 1e-3  # sigma_q >= 1e-3 sigma_p keeps log q finite


class StochasticLayer(nn.Module):
    """One layer of the top-down path: prior p(z_l | s), residual posterior q(z_l | s, d), state update.

    A vector layer (``spatial`` False) has ``dim`` units read and written by linear maps of the state
    vector s [n, width]. A map layer has ``dim`` latent channels at every position of the state map
    s [n, width, H, W] (NVAE's spatial latents), read and written by 3x3 convolutions; its units are
    its channels x positions, flattened channel-major.
    """

    def __init__(self, dim: int, width: int, activation: str, top: bool, spatial: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.axis = 1 if spatial else -1
        act = ACTIVATIONS[activation]
        if spatial:
            self.prior_net = nn.Sequential(_conv(width, width), act(), _conv(width, 2 * dim))
            self.posterior_net: nn.Module = _conv(2 * width, 2 * dim)
            self.update_net: nn.Module = _conv(width + dim, width)
        else:
            self.prior_net = None if top else mlp([width, width, 2 * dim], activation)
            self.posterior_net = nn.Linear(2 * width, 2 * dim)
            self.update_net = nn.Linear(width + dim, width)
        self.act = act()

    def init_heads(self) -> None:
        """Unit-gain (linear) Kaiming weights for the maps no activation follows: the prior and posterior
        heads and the state update. With an activation's gain there (5/3 for tanh, sqrt 2 for ReLU)
        the state grows layer by layer and the first KL is in the tens of thousands of nats."""
        heads = [self.posterior_net, self.update_net]
        if self.prior_net is not None:
            heads.append(self.prior_net[-1])
        for head in heads:
            nn.init.kaiming_normal_(head.weight, nonlinearity="linear")
            nn.init.zeros_(head.bias)

    def _halves(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split a layer's [n, 2 dim(, H, W)] output into two [n, units] halves."""
        a, b = params.chunk(2, self.axis)
        return a.flatten(1), b.flatten(1)

    def prior(self, s: torch.Tensor) -> DiagonalGaussian:
        """N(0, I) at the top, else N(mu(s), sigma(s)^2)."""
        if self.prior_net is None:
            zeros = s.new_zeros(s.shape[0], self.dim)
            return DiagonalGaussian(zeros, torch.ones_like(zeros))
        return DiagonalGaussian.from_halves(*self._halves(self.prior_net(s)))

    def posterior(self, s: torch.Tensor, d: torch.Tensor, p: DiagonalGaussian) -> DiagonalGaussian:
        """N(mu_p + dmu, (sigma_p * dsigma)^2) with (dmu, dsigma) from the state and the features."""
        dmu, raw = self._halves(self.posterior_net(torch.cat([s, d], self.axis)))
        ratio = F.softplus(raw + SOFTPLUS_ONE).clamp(min=MIN_SCALE_RATIO)
        return DiagonalGaussian(p.loc + dmu, p.scale * ratio)

    def update(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """s_{l-1} = s_l + A_l [act(s_l), z_l] (z_l [n, units] laid out as the state)."""
        z = z.view(s.shape[0], self.dim, *s.shape[2:])
        return s + self.update_net(torch.cat([self.act(s), z], self.axis))


def _conv(a: int, b: int) -> nn.Conv2d:
    return nn.Conv2d(a, b, 3, padding=1)


@dataclass
class Walk:
    """One pass down the layers for n rows; q-terms are None when walked under the prior."""

    z: torch.Tensor  # [n, D], layers top first
    state: torch.Tensor  # [n, width] or [n, C, H, W] with map layers: the decoder's input s_0
    log_pz: torch.Tensor  # [n]
    log_qz: torch.Tensor | None  # [n]
    kl_dims: torch.Tensor | None  # [n, D]: KL(q_l || p_l) per unit, given the layers above
    scale: torch.Tensor  # [n, D]: the walked distribution's standard deviation per unit


class TopDown(Prior):
    """p(z) = p(z_L) prod_{l<L} p(z_l | z_>l) over z = [z_L, ..., z_1]; also walks the posterior.

    The vector layers (``latent_dims`` units each) come first; the map layers (``latent_channels``
    latent channels each) below them, at the decoder's first feature map of shape ``map_shape``
    (C, H, W): the state vector is expanded to that map (a linear map and the activation) before the
    first of them, and the decoder then reads the state map.
    """

    def __init__(
        self,
        latent_dims: list[int],
        width: int,
        activation: str = "relu",
        latent_channels: list[int] | None = None,
        map_shape: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self.width = width
        layers = [StochasticLayer(d, width, activation, top=i == 0) for i, d in enumerate(latent_dims)]
        self.latent_dims = list(latent_dims)  # units per layer, top first
        self.expand = None
        if latent_channels:
            c, h, w = map_shape
            self.expand = nn.Sequential(
                nn.Linear(width, c * h * w), ACTIVATIONS[activation](), nn.Unflatten(1, (c, h, w))
            )
            layers += [StochasticLayer(k, c, activation, top=False, spatial=True) for k in latent_channels]
            self.latent_dims += [k * h * w for k in latent_channels]
        self.vector_layers = len(latent_dims)
        self.layers = nn.ModuleList(layers)
        self.latent_dim = sum(self.latent_dims)

    def walk(
        self,
        n: int,
        features: list[torch.Tensor] | None = None,
        z: torch.Tensor | None = None,
        mean: bool = False,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
        top: torch.Tensor | None = None,
    ) -> Walk:
        """Go down the layers under q (bottom-up ``features`` given, top layer first) or p; each z_l
        is taken from ``z``, is the walked distribution's mean, or is mu_l + sigma_l eps_l with eps_l
        the layer's columns of ``eps`` [n, D] (drawn from ``generator`` when None); ``top`` [n, d_L],
        when given, is the top layer's z_L and the rule above applies to the layers below it."""
        s = self.layers[0].update_net.weight.new_zeros(n, self.width)
        given = None if z is None else z.split(self.latent_dims, -1)
        noise = None if eps is None else eps.split(self.latent_dims, -1)
        zs, kls, scales = [], [], []
        log_pz = log_qz = s.new_zeros(n)
        for i, layer in enumerate(self.layers):
            if i == self.vector_layers:
                s = self.expand(s)
            p = layer.prior(s)
            q = None if features is None else layer.posterior(s, features[i], p)
            dist = p if q is None else q
            if i == 0 and top is not None:
                zl = top
            elif given is not None:
                zl = given[i]
            elif mean:
                zl = dist.loc
            else:
                e = noise[i] if noise is not None else torch.randn(
                    dist.loc.shape, generator=generator, device=s.device, dtype=s.dtype)
                zl = dist.loc + dist.scale * e
            log_pz = log_pz + p.log_prob(zl)
            if q is not None:
                log_qz = log_qz + q.log_prob(zl)
                kls.append(kl_divergence(q.base_dist, p.base_dist))
            zs.append(zl)
            scales.append(dist.scale)
            s = layer.update(s, zl)
        under_q = features is not None
        return Walk(
            torch.cat(zs, -1),
            s,
            log_pz,
            log_qz if under_q else None,
            torch.cat(kls, -1) if under_q else None,
            torch.cat(scales, -1),
        )

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.reshape(-1, z.shape[-1])
        return self.walk(flat.shape[0], z=flat).log_pz.view(z.shape[:-1])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling: z_L ~ N(0, I), then each z_l ~ p(z_l | z_>l)."""
        return self.walk(n, generator=generator).z

    def mean_below(self, top: torch.Tensor) -> torch.Tensor:
        """Latents [N, D] with top layer ``top`` [N, d_L] and every layer below at the mean of
        p(z_l | z_>l): the prior's mean path from a chosen top."""
        return self.walk(top.shape[0], top=top, mean=True).z

    def state(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's input s_0 for latents z [N, D]."""
        return self.walk(z.shape[0], z=z).state


class TopDownPosterior(Distribution):
    """q(z|x) = prod_l q(z_l | z_>l, x) over z = [z_L, ..., z_1] for a batch of B examples.

    ``mean`` is the mean path: each layer's mean given the means above (exactly E_q[z_L] at the top);
    one embedding row per example. ``stddev`` is each layer's standard deviation along that path.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, top_down: TopDown, features: list[torch.Tensor]) -> None:
        self.top_down = top_down
        self.features = features
        batch = torch.Size([features[0].shape[0]])
        super().__init__(batch, torch.Size([top_down.latent_dim]), validate_args=False)

    def walk(self, k: int, **kwargs) -> Walk:
        """k walks per example, rows ordered [k, B] (sample-major)."""
        b = self.batch_shape[0]
        features = [f.repeat(k, *(1,) * (f.dim() - 1)) for f in self.features]
        return self.top_down.walk(k * b, features, **kwargs)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        k = math.prod(sample_shape)
        return self.walk(k).z.view(*sample_shape, *self.batch_shape, -1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) for z [..., B, D]."""
        lead = z.shape[:-2]
        k = math.prod(lead)
        return self.walk(k, z=z.reshape(-1, z.shape[-1])).log_qz.view(*lead, *self.batch_shape)

    @property
    def mean(self) -> torch.Tensor:
        return self.walk(1, mean=True).z

    @property
    def stddev(self) -> torch.Tensor:
        return self.walk(1, mean=True).scale

    @property
    def variance(self) -> torch.Tensor:
        return self.stddev.pow(2)


class BottomUp(nn.Module):
    """Deterministic features per layer, top layer first: for the vector layers d_1 = backbone(x, c),
    d_{l+1} = d_l + f_l(d_l); every map layer reads the backbone's last feature map."""

    def __init__(
        self, backbone: nn.Module, width: int, layers: int, activation: str = "relu", map_layers: int = 0
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.map_layers = map_layers
        self.steps = nn.ModuleList(mlp([width, width, width], activation) for _ in range(layers - 1))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> list[torch.Tensor]:
        if self.map_layers:
            d, m = self.backbone.forward_map(x, c)
        else:
            d, m = self.backbone(x, c), None
        features = [d]
        for f in self.steps:
            d = d + f(d)
            features.append(d)
        return features[::-1] + [m] * self.map_layers


class MapDecoder(nn.Module):
    """The decoder of a model with map layers: the conv decoder's body on the state map, a condition
    vector (if any) added as a per-channel bias first."""

    def __init__(self, body: nn.Module, channels: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.body = body
        self.cond = nn.Linear(cond_dim, channels) if cond_dim else None

    def forward(self, s: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.cond is not None and c is not None:
            s = s + self.cond(c)[:, :, None, None]
        return self.body(s)


@register("model", "hierarchical")
class HierarchicalVAE(VAE):
    """A VAE whose prior is the top-down path over L stochastic layers (``TopDown``), whose posterior
    walks the same path (``TopDownPosterior``), and whose decoder reads the path's last state. Its
    prior and posterior are its own, so its config has no prior or posterior section."""

    @dataclass
    class Config(PartConfig):
        latent_dims: list[int] = field(default_factory=lambda: [32])  # units per vector layer, top first
        latent_channels: list[int] = field(default_factory=list)  # latent maps below those layers
        width: int = 256  # width of the bottom-up summary, the top-down path and its heads
        conditional: bool = False  # condition the bottom-up and decoder nets on the label y
        net: PartConfig = part("net", "resnet")  # the backbone
        likelihood: PartConfig = part("likelihood", "bernoulli")  # p(x|z), per example

        def __post_init__(self) -> None:
            if not self.latent_dims:
                raise ConfigError("the hierarchical model needs model.latent_dims, units per layer",
                                  "set e.g. model.latent_dims=[16,16] (top layer first)")
            require_sizes("model.latent_dims", self.latent_dims)
            require_sizes("model.latent_channels", self.latent_channels)
            require("model.width", self.width, self.width >= 1, ">= 1")

    @classmethod
    def build(cls, cfg: Config, schema: DataSchema) -> HierarchicalVAE:
        cond_dim = label_classes(cfg.conditional, schema)
        likelihood = build_likelihood(cfg.likelihood, schema)
        dims, channels, width = cfg.latent_dims, cfg.latent_channels, cfg.width
        if channels and cfg.net.name not in ("conv", "resnet"):
            raise ConfigError(
                f"model.latent_channels puts latent maps on the decoder's first feature map, but the "
                f"{cfg.net.name} backbone has none",
                "use model.net=resnet (or conv) on image data, or set model.latent_channels=[]",
            )
        backbone, decoder = build_nets(cfg.net, schema, width, width, likelihood.head_shape(schema), cond_dim)
        map_shape = None
        if channels:
            map_shape = decoder.start
            decoder = MapDecoder(decoder.body, map_shape[0], cond_dim)
        activation = cfg.net.activation
        bottom_up = BottomUp(backbone, width, len(dims), activation, len(channels))
        top_down = TopDown(dims, width, activation, channels, map_shape)
        model = cls(bottom_up, top_down, decoder, likelihood, schema.event_shape, cond_dim)
        he_init(model, activation)
        for layer in top_down.layers:
            layer.init_heads()
        return model

    bf16_safe = False  # the layers' log-densities are computed inside the top-down networks

    def __init__(
        self,
        bottom_up: BottomUp,
        top_down: TopDown,
        decoder: nn.Module,
        likelihood: Likelihood,
        event_shape: tuple[int, ...],
        num_classes: int = 0,
    ) -> None:
        super().__init__(bottom_up, None, top_down, decoder, likelihood, event_shape, num_classes)

    analytic_kl_dims = True  # the per-layer Gaussians' KL, given the layers above
    diagonal_posterior = False  # q(z|x) is a chain of Gaussians, not one diagonal Gaussian

    @property
    def latent_dims(self) -> list[int]:
        return self.prior.latent_dims

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> TopDownPosterior:
        """q(z|x) over all layers, z = [z_L, ..., z_1]; ``.mean`` is one embedding row per example."""
        x = self.batch(x)
        return TopDownPosterior(self.prior, self.encoder(x, self.condition(y, x.shape[0])))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        """p(x|z) for latents z [N, D] of all layers."""
        z = self.latents(z)
        return self.likelihood(self.decoder(self.prior.state(z), self.condition(y, z.shape[0])))

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, k: int = 1, eps: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> Output:
        """Output with k top-down posterior walks; kl = sum over layers of the analytic KL(q_l || p_l)
        given the sampled layers above, averaged over the k walks; extras kl_layers [B, L] top layer
        first, and kl_groups with latent maps. ``eps`` [k, B, D]: the standard normals of all layers
        (drawn from torch's generator when None); ``target``: the data log p(x|z) scores, as in
        ``VAE.forward``."""
        b = x.shape[0]
        c = self.condition(y, b)
        noise = None if eps is None else eps.reshape(k * b, -1)
        w = TopDownPosterior(self.prior, self.encoder(x, c)).walk(k, eps=noise)
        px = self.likelihood(self.decoder(w.state, None if c is None else c.repeat(k, 1)))
        kl_dims = w.kl_dims.view(k, b, -1).mean(0)
        parts = kl_dims.split(self.latent_dims, -1)
        kl_layers = torch.stack([part.sum(-1) for part in parts], -1)
        extras = {"kl_layers": kl_layers}
        if self.prior.expand is not None:  # free bits per latent channel (all its positions) of a map layer
            v = self.prior.vector_layers
            layers = self.prior.layers[v:]
            maps = [p.view(b, layer.dim, -1).sum(-1) for p, layer in zip(parts[v:], layers, strict=True)]
            extras["kl_groups"] = torch.cat([*parts[:v], *maps], -1)
        return Output(
            log_px_z=log_prob_repeated(px, x if target is None else target, k),
            log_qz=w.log_qz.view(k, b),
            log_pz=w.log_pz.view(k, b),
            kl=kl_layers.sum(-1),
            kl_dims=kl_dims,
            z=w.z.view(k, b, -1),
            extras=extras,
        )


def he_init(model: nn.Module, activation: str) -> None:
    """Kaiming-normal weights (gain for the activation; tanh's own, ReLU's for the ReLU-like ones) and
    zero biases for every linear layer of ``model``."""
    nonlinearity = "tanh" if activation == "tanh" else "relu"
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity=nonlinearity)
            nn.init.zeros_(layer.bias)


__all__ = [
    "BottomUp", "HierarchicalVAE", "MapDecoder", "StochasticLayer", "TopDown", "TopDownPosterior",
    "he_init",
]
