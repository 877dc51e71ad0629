"""What the explorer page shows, computed from one run folder with no web framework in sight.

At start: the model (``vaekit.load``), a seeded subset of a data split, its posterior means, their
2-D projection for the map and the per-dimension KL that orders the sliders. Afterwards: decode,
encode, interpolate, traverse, sample and reconstruct on request. Inputs are checked here; a bad one
raises ``ExplorerInputError`` carrying the HTTP status that fits it.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.api import load_split
from vaekit.applications import latent_walk as lw
from vaekit.errors import DataError, VaekitError
from vaekit.evaluation import dimension_activity, evaluate_elbo, posterior_means
from vaekit.runs import folder as rd
from vaekit.runs.report import EVALUATION
from vaekit.server import rows
from vaekit.server.images import image_to_input, open_image
from vaekit.server.projection import Projection, fit_projection

MAX_POINTS = 2000
MAX_ABS_Z = 1000.0


class ExplorerInputError(ValueError):
    """A request the explorer cannot answer; ``status`` is the HTTP status to send (4xx)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class Explorer:
    """A loaded run plus the state of its map; methods answer the page's requests. The map shows
    ``split`` (default: the test split, or the validation split when the data has no test split)."""

    def __init__(
        self,
        run_dir: str | Path,
        split: str | None = None,
        max_points: int = MAX_POINTS,
        projection: str = "auto",
        seed: int = 0,
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.cfg, self.data_info = rd.read_config(self.run_dir)
        self.model = rd.load(self.run_dir)
        self.columns = self.data_info.schema.columns if self.data_info.schema.kind == "table" else ()
        shape = self.model.event_shape
        if not self.columns and (len(shape) != 3 or shape[0] not in (1, 3)):
            raise DataError(
                f"the explorer shows images and table rows, and this run's examples have shape {shape}",
                "serve a run trained on image data (1 or 3 channels) or on a table",
            )
        self.seed = seed
        self._rng_lock = threading.Lock()
        self.split = split or "test"
        self.x, self.y = load_split(self.run_dir, self.split)
        if len(self.x) == 0 and split is None:
            self.split = "valid"
            self.x, self.y = load_split(self.run_dir, self.split)
        if len(self.x) == 0:
            raise DataError(f"the {self.split} split of this run's data is empty", "serve another split")
        g = torch.Generator().manual_seed(seed)
        self.indices = torch.randperm(len(self.x), generator=g)[:max_points].sort().values
        self.means, self.activity, self.activity_kind = self._encode_map_points()
        self.dim_order = [int(i) for i in np.argsort(-self.activity, kind="stable")]
        self.projection: Projection = fit_projection(self.means, projection, seed)
        self.points = self.projection.transform(self.means)
        self.axes = lw.prior_axes(self.model, seed)  # what a traversal steps in
        if self.is_table:  # the map's rows as the model sees them (decoded from the encoded split)
            self.map_x = self.x[self.indices].double().numpy()
            self.map_rows = rows.decode_rows(self.map_x, self.columns)

    @property
    def is_table(self) -> bool:
        return bool(self.columns)

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def num_classes(self) -> int:
        return int(self.model.num_classes)

    def _encode_map_points(self) -> tuple[np.ndarray, np.ndarray, str]:
        """Posterior means of the map's examples and each dimension's activity: the mean KL(q(z_i|x) ||
        p(z_i)) in nats when it is analytic, else Var_x E_q[z_i|x] (the active-units statistic)."""
        x, y = self.x[self.indices], None if self.y is None else self.y[self.indices]
        with self._rng_lock:
            activity, kind = dimension_activity(self.model, x, y, seed=self.seed)
        return posterior_means(self.model, x, y, 500).numpy(), activity.numpy(), kind

    # ---- checks -------------------------------------------------------------------------------

    def check_z(self, z: list[float]) -> torch.Tensor:
        """A latent vector from a request: latent_dim finite numbers of moderate size."""
        if len(z) != self.latent_dim:
            raise ExplorerInputError(
                f"z has {len(z)} numbers; this model's latent space has {self.latent_dim} dimensions"
            )
        t = torch.tensor(z, dtype=torch.float32)
        if not torch.isfinite(t).all() or t.abs().max() > MAX_ABS_Z:
            raise ExplorerInputError(f"z must hold finite numbers with |z_i| <= {MAX_ABS_Z:g}")
        return t

    def check_label(self, label: int | None, fallback: int | None = None) -> torch.Tensor | None:
        """The class to condition on: required (or taken from ``fallback``) for a conditional model,
        refused for an unconditional one."""
        if not self.num_classes:
            if label is not None:
                raise ExplorerInputError("this model is not conditional: leave out 'label'")
            return None
        label = fallback if label is None else label
        if label is None:
            raise ExplorerInputError(
                f"this is a conditional model: give 'label', a class in 0..{self.num_classes - 1}"
            )
        if not 0 <= label < self.num_classes:
            classes = f"0..{self.num_classes - 1}"
            raise ExplorerInputError(f"label {label} is not a class of this model ({classes})")
        return torch.tensor([label])

    def check_index(self, index: int) -> int:
        if not 0 <= index < len(self.x):
            raise ExplorerInputError(
                f"there is no example #{index} in the {self.split} split (0..{len(self.x) - 1})", 404
            )
        return index

    def images_only(self, what: str) -> None:
        """Refuse a request that shows images when the run was trained on a table."""
        if self.is_table:
            raise ExplorerInputError(f"{what} shows images, and this run was trained on a table: use the map "
                                     "and /decode, which give rows")

    def check_column(self, name: str) -> str:
        """A column of a table run to colour the map by."""
        if not self.is_table:
            raise ExplorerInputError("color_by picks a table column, and this run was trained on images")
        names = [c.name for c in self.columns]
        if name not in names:
            raise ExplorerInputError(
                f"the table has no column {name!r}; its columns: {', '.join(names)}", 404)
        return name

    def color_by(self, name: str) -> dict[str, Any]:
        """Column ``name`` of the map's rows: each row's value and the number it is coloured by."""
        name = self.check_column(name)
        return {"color_by": name, "values": [r[name] for r in self.map_rows],
                "color": rows.color_values(self.map_x, self.map_rows, self.columns, name)}

    def decode_row_of_input(self, x: torch.Tensor) -> dict[str, Any]:
        """One encoded row [1, width] of the split back into the table's columns."""
        return rows.decode_rows(x.double().numpy(), self.columns)[0]

    def decode_row(self, z: torch.Tensor, label: torch.Tensor | None) -> dict[str, Any]:
        """A latent [d] decoded to a row: the likelihood mean E[x|z] (category and mode probabilities)
        read back into the table's columns."""
        return rows.decode_rows(self.decode(z[None], label).double().numpy(), self.columns)[0]

    def upload(self, data: bytes, invert: bool = False) -> torch.Tensor:
        """An uploaded image file as one model input [1, C, H, W] (see ``vaekit.server.images``)."""
        self.images_only("an upload")
        img = open_image(data)
        return image_to_input(
            img, self.model.event_shape, self.cfg.data.binarize, self.cfg.data.binarize_seed, invert
        )

    # ---- answers ------------------------------------------------------------------------------

    def map_points(self, z: torch.Tensor) -> list[list[float]] | None:
        """Where latents [N, d] land on the map (None for a costly non-linear projection)."""
        if not self.projection.linear:
            return None
        return self.projection.transform(z.double().numpy()).tolist()

    def map_point(self, z: torch.Tensor) -> list[float] | None:
        """Where one latent [d] lands on the map (or None)."""
        points = self.map_points(z[None])
        return None if points is None else points[0]

    def latent_of_point(self, point: list[float]) -> torch.Tensor:
        """The latent a map point stands for (for PCA: the mean plus the point in the top-2 plane),
        held to the same bounds as a ``z`` sent directly (finite, |z_i| <= MAX_ABS_Z): a point far
        off the map would otherwise decode an overflowed or absurd latent into a blank image."""
        with np.errstate(over="ignore", invalid="ignore"):
            z = np.asarray(self.projection.inverse(np.asarray([point], dtype=np.float64)))[0]
        largest = float(np.max(np.abs(z))) if np.isfinite(z).all() else math.inf
        if largest > MAX_ABS_Z:
            size = "is not finite" if math.isinf(largest) else f"has |z_i| up to {largest:.4g}"
            raise ExplorerInputError(
                f"point {list(point)} stands for a latent that {size}; latents must hold finite numbers "
                f"with |z_i| <= {MAX_ABS_Z:g}: pick a point nearer the map"
            )
        return torch.as_tensor(z, dtype=torch.float32)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        """Likelihood means E[x|z] for latents [N, d] -> images [N, C, H, W]."""
        y = None if label is None else label.expand(z.shape[0])
        return self.model.decode(z, y).mean

    @torch.no_grad()
    def encode(
        self, x: torch.Tensor, label: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Posterior mean and standard deviation of q(z|x) for inputs [N, C, H, W] (the standard
        deviation is None for a posterior without a closed form, e.g. a flow)."""
        q = self.model.encode(x, None if label is None else label.expand(x.shape[0]))
        try:
            std = q.stddev
        except NotImplementedError:
            std = None
        return q.mean, std

    def example(self, index: int) -> tuple[torch.Tensor, int | None, torch.Tensor | None]:
        """Example ``index`` of the split [1, C, H, W], its label and the condition to encode it with."""
        index = self.check_index(index)
        label = None if self.y is None else int(self.y[index])
        return self.x[index : index + 1], label, self.check_label(label) if self.num_classes else None

    @torch.no_grad()
    def samples(self, n: int, seed: int, label: int | None) -> tuple[torch.Tensor, list[int] | None]:
        """n draws z ~ p(z) decoded; a conditional model decodes the same n latents for every class
        (one row per class; or for ``label`` only), so a column shows one style across classes."""
        self.images_only("/samples")
        g = torch.Generator().manual_seed(seed)
        z = self.model.prior.sample(n, generator=g)
        if not self.num_classes:
            self.check_label(label)
            return self.decode(z, None), None
        classes = [int(self.check_label(label)[0])] if label is not None else list(range(self.num_classes))
        y = torch.tensor(classes).repeat_interleave(n)
        return self.model.decode(z.repeat(len(classes), 1), y).mean, y.tolist()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, label: torch.Tensor | None, k: int) -> dict[str, Any]:
        """Reconstruction E[x | z = E_q z], the ELBO and its parts, and log p(x) importance-sampled with
        k samples (nats; seeded, so the same input gives the same numbers)."""
        with self._rng_lock, torch.random.fork_rng(devices=[]):
            parts = evaluate_elbo(self.model, x, label, batch_size=1, seed=self.seed)
            torch.manual_seed(self.seed)
            log_px = float(self.model.log_likelihood(x, k=k, y=label)[0])
        dims = int(np.prod(self.model.event_shape))
        return {
            "reconstruction": self.model.reconstruct(x, label),
            "elbo": parts["elbo"],
            "recon": parts["recon"],
            "kl": parts["kl"],
            "nll": -log_px,
            "bits_per_dim": -log_px / (dims * np.log(2.0)),
        }

    @torch.no_grad()
    def traverse(
        self, dims: list[int] | None, top: int, span: float, steps: int, index: int | None,
        label: int | None,
    ) -> dict[str, Any]:
        """A traversal grid (``vaekit.applications.latent_walk``): the units ``dims``, or the ``top``
        most active ones, each over -span .. span prior standard deviations, from the prior mean or
        example ``index``'s posterior mean: latents [rows, steps, d] and their decodings [rows, steps,
        C, H, W], with the units and their activity."""
        self.images_only("a traversal")
        axes = self.axes
        activity = torch.as_tensor(self.activity[: axes.units])
        spec = f"top:{top}" if dims is None else ",".join(map(str, dims))
        try:
            dims = lw.order_dims(activity, spec)
        except VaekitError as e:
            raise ExplorerInputError(e.problem.replace("--dims", "dims")) from None
        x, fallback, condition = (None, None, None) if index is None else self.example(index)
        y = self.check_label(label, fallback)
        base = lw.base_point(self.model, axes, x, condition)
        z, images = lw.traverse(self.model, dims, base, axes, span, steps, y)
        return {
            "images": images,
            "z": z,
            "dims": dims,
            "activity": [float(activity[d]) for d in dims],
            "values": torch.linspace(-span, span, steps).tolist(),
            "meaning": axes.meaning,
            "label": None if y is None else int(y[0]),
        }

    def evaluation(self) -> dict[str, Any]:
        """The run's recorded metrics (evaluation.json), read afresh; {} when there are none."""
        path = self.run_dir / EVALUATION
        try:
            return json.loads(path.read_text()) if path.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}

    def info(self) -> dict[str, Any]:
        return {
            "run": self.run_dir.name,
            "data": self.data_info.name,
            "event_shape": list(self.model.event_shape),
            "latent_dim": self.latent_dim,
            "num_classes": self.num_classes,
            "binarize": self.cfg.data.binarize,
            "likelihood": self.cfg.model.likelihood.name,
            "split": self.split,
            "split_size": len(self.x),
            "map_points": len(self.indices),
            "projection": self.projection.method,
            "axes": list(self.projection.axes),
            "activity_kind": self.activity_kind,
            "activity": self.activity.tolist(),
            "dim_order": self.dim_order,
            "columns": rows.column_info(self.columns) if self.is_table else None,
            "config": self.cfg.to_dict(),
            "evaluation": self.evaluation(),
        }
