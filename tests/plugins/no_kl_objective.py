"""A new objective with no KL term: an autoencoder's -E_q log p(x|z) alone, logging it and the
size of the codes as its own named terms."""

from vaekit.parts.objectives import Objective
from vaekit.registry import register


@register("objective", "reconstruction")
class Reconstruction(Objective):
    def __init__(self, cfg, model, dataset_size, steps_per_epoch):
        self.samples = cfg.samples

    def __call__(self, out, step):
        nll = -out.log_px_z.mean(0)
        return nll.mean(), {"nll_x": nll.detach(), "z_norm": out.z.detach().pow(2).sum(-1).mean(0).sqrt()}
