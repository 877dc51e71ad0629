"""Request and response bodies of the explorer's JSON API (they make its OpenAPI document).

Images travel as PNG data URLs (``data:image/png;base64,...``) at the model's resolution; latents as
lists of latent_dim numbers; map points as [x, y] in the map's coordinates.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

Image = str  # a PNG data URL


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _exactly_one(obj: BaseModel, a: str, b: str) -> None:
    if (getattr(obj, a) is None) == (getattr(obj, b) is None):
        raise ValueError(f"give exactly one of '{a}' and '{b}'")


class DecodeRequest(Strict):
    """A latent vector ``z``, or a ``point`` on the map that stands for one."""

    z: list[FiniteFloat] | None = Field(None, description="latent_dim numbers")
    point: tuple[FiniteFloat, FiniteFloat] | None = Field(None, description="[x, y] on the map")
    label: int | None = Field(None, description="class to condition on (conditional models only)")

    @model_validator(mode="after")
    def _one_source(self) -> DecodeRequest:
        _exactly_one(self, "z", "point")
        return self


Row = dict[str, Any]  # a table row: column name -> value (None for a missing cell)


class DecodeResponse(BaseModel):
    image: Image | None = Field(description="E[x|z], the likelihood mean (None for a table run)")
    row: Row | None = Field(description="table runs: E[x|z] decoded into the table's columns")
    z: list[float]
    point: list[float] | None = Field(description="where z lies on the map (None for UMAP)")


class Endpoint(Strict):
    """One end of an interpolation: an example of the map's split by ``index``, or a latent ``z``."""

    index: int | None = None
    z: list[FiniteFloat] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Endpoint:
        _exactly_one(self, "index", "z")
        return self


class InterpolateRequest(Strict):
    a: Endpoint
    b: Endpoint
    steps: int = Field(8, ge=2, le=32, description="images in the strip, both ends included")
    path: Literal["linear", "spherical"] = Field("linear", description="straight line or great circle")
    label: int | None = Field(None, description="class to decode with (conditional models; default: a's)")


class InterpolateResponse(BaseModel):
    images: list[Image]
    z: list[list[float]]
    t: list[float]
    points: list[list[float]] | None
    label: int | None


class TraverseRequest(Strict):
    """A traversal grid: one row per latent unit, moved from -range to +range prior standard deviations
    with the other units at the base point (``vaekit.applications.latent_walk``)."""

    dims: list[int] | None = Field(None, min_length=1, max_length=32,
                                   description="the units, one row each (default: the 'top' most active)")
    top: int = Field(8, ge=1, le=32, description="without 'dims': this many units, most KL first")
    range: FiniteFloat = Field(3.0, gt=0, le=10, description="prior standard deviations each side")
    steps: int = Field(9, ge=2, le=16, description="images per row")
    index: int | None = Field(None, description="base point: this example's posterior mean (default: the "
                              "prior mean)")
    label: int | None = Field(None, description="class to decode with (conditional models; default: the "
                              "example's)")


class TraverseRow(BaseModel):
    dim: int
    activity: float = Field(description="the unit's mean KL in nats (or Var E_q[z|x]; see activity_kind)")
    images: list[Image]
    z: list[list[float]] = Field(description="each image's latent (all layers, for a hierarchical model)")


class TraverseResponse(BaseModel):
    rows: list[TraverseRow]
    values: list[float] = Field(description="the steps, in prior standard deviations around the prior mean")
    activity_kind: Literal["kl", "variance"]
    meaning: str = Field(description="what the range is measured in, for this model's prior")
    label: int | None


class EncodeResponse(BaseModel):
    image: Image | None = Field(description="the input as the model sees it (resized, scaled, binarized; "
                                "None for a table run)")
    row: Row | None = Field(None, description="table runs: the example's row as the model sees it")
    z: list[float] = Field(description="posterior mean E_q[z|x]")
    std: list[float] | None = Field(description="posterior standard deviations (None for a flow)")
    point: list[float] | None
    label: int | None


class Example(EncodeResponse):
    index: int


class MapResponse(BaseModel):
    x: list[float]
    y: list[float]
    index: list[int] = Field(description="the examples' indices in the split")
    label: list[int] | None
    projection: str = Field(description="latent (d = 2), pca or umap")
    axes: list[str]
    split: str
    columns: list[str] | None = Field(description="table runs: the columns the map can be coloured by")
    color_by: str | None = Field(description="the column asked for with ?color_by=")
    values: list[Any] | None = Field(description="that column's value for each point (decoded rows)")
    color: list[int | float | None] | None = Field(
        description="each point's colour number: a category's index in the column's labels, or the value")


class SamplesResponse(BaseModel):
    images: list[Image]
    labels: list[int] | None = Field(description="class of each image (conditional models)")
    columns: int


class ReconstructResponse(BaseModel):
    image: Image = Field(description="the input as the model sees it")
    reconstruction: Image = Field(description="E[x | z = E_q z]")
    elbo: float = Field(description="ELBO in nats (one seeded posterior sample)")
    recon: float = Field(description="-E_q log p(x|z) in nats")
    kl: float = Field(description="KL(q(z|x) || p(z)) in nats")
    nll: float = Field(description="-log p(x) in nats, importance-sampled with k samples")
    bits_per_dim: float
    k: int


class InfoResponse(BaseModel):
    run: str
    data: str
    event_shape: list[int]
    latent_dim: int
    num_classes: int
    binarize: str
    likelihood: str
    split: str
    split_size: int
    map_points: int
    projection: str
    axes: list[str]
    activity_kind: Literal["kl", "variance"] = Field(
        description="kl: mean KL per dimension in nats; variance: Var_x E_q[z_i|x]"
    )
    activity: list[float] = Field(description="per latent dimension, in dimension order")
    dim_order: list[int] = Field(description="dimensions, most active first")
    columns: list[dict[str, Any]] | None = Field(description="table runs: name, type, categories per column")
    config: dict[str, Any]
    evaluation: dict[str, Any] = Field(description="the run's evaluation.json")
    limits: dict[str, Any]
