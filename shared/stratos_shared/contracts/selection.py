"""Why the selector chose a server: carried in `ServerChosen` and printed by `stratos explain`.

Kept small and self-describing so an operator can audit a placement from the
event alone, without re-running the selector against a catalog that may have
changed since.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from stratos_shared.contracts.base import CONTRACT_CONFIG


class _Frozen(BaseModel):
    model_config = ConfigDict(**CONTRACT_CONFIG, extra="forbid")


class Objectives(_Frozen):
    """Raw objective values of one server for this job (before normalisation)."""

    hardware: float = Field(description="Hardware capability score H (higher is better); see selector estimates.")
    cost_usd: float = Field(ge=0, description="Estimated job cost on this server: training + serving hours × price.")
    latency_ms: float = Field(ge=0, description="Network latency from the users to the server, in ms.")


class NormalisedObjectives(_Frozen):
    """Objectives mapped to [0, 1] as minimisation over the feasible set (0 = best feasible)."""

    hardware: float = Field(ge=0, le=1, description="1 - min-max normalised H, so 0 is the strongest feasible server.")
    cost: float = Field(ge=0, le=1, description="Min-max normalised estimated cost; 0 is the cheapest feasible.")
    latency: float = Field(ge=0, le=1, description="Min-max normalised latency; 0 is the fastest feasible.")


class GridCell(_Frozen):
    """A Pareto Front Grid cell: each index in [0, grid_k - 1], lower is better."""

    hardware: int = Field(ge=0, description="Cell index along the (minimised) hardware axis.")
    cost: int = Field(ge=0, description="Cell index along the cost axis.")
    latency: int = Field(ge=0, description="Cell index along the latency axis.")


class ResourceEstimate(_Frozen):
    """The estimate the decision used, for the chosen (or closest) server."""

    memory_gb_needed: float = Field(ge=0, description="GPU memory the training run needs on one device, in GiB.")
    memory_gb_per_gpu: float = Field(ge=0, description="Per-GPU need on the chosen server after sharding states.")
    training_hours: float = Field(ge=0, description="Estimated wall-clock training time on the chosen server.")
    serving_hours: float = Field(ge=0, description="Serving time the budget must cover (from the job constraints).")
    estimated_cost_usd: float = Field(ge=0, description="(training_hours + serving_hours) × cost_per_hour.")
    student_params_b: float = Field(gt=0, description="Student size the estimate was made for (largest candidate).")
    method: str = Field(description="Training method the estimate assumed.")


class Alternative(_Frozen):
    """A candidate server and, unless it won, the plain-words reason it lost."""

    server_id: str = Field(description="Server id.")
    rank: int = Field(ge=1, description="1 = chosen; the ranking rule depends on the strategy.")
    objectives: Objectives = Field(description="Raw objective values.")
    normalised: NormalisedObjectives = Field(description="Objectives normalised over the feasible set.")
    cell: GridCell = Field(description="Pareto Front Grid cell of the server.")
    on_front: bool = Field(description="Whether the server is Pareto-optimal among the feasible servers.")
    distance: float = Field(ge=0, description="Euclidean distance to the ideal point (0,0,0) in normalised space.")
    why_not: str | None = Field(
        default=None,
        description="Why it lost, e.g. 'dominated by srv-3 (cheaper and lower latency)'; None for the chosen server.",
    )


class SelectionExplanation(_Frozen):
    """The whole decision in one record: counts, the chosen cell, the losers and the estimate."""

    strategy: str = Field(description="Strategy used: pareto, accuracy-first, cost-first, latency-first, ...")
    total_count: int = Field(ge=0, description="Servers considered (the catalog size).")
    feasible_count: int = Field(ge=0, description="Servers passing every constraint.")
    pareto_size: int = Field(ge=0, description="Pareto-optimal servers among the feasible ones.")
    grid_k: int = Field(ge=1, description="Grid divisions per objective.")
    chosen_server_id: str | None = Field(default=None, description="The winner; None when nothing was feasible.")
    chosen_cell: GridCell | None = Field(default=None, description="The winner's grid cell.")
    excluded: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Infeasible servers counted by the first constraint they break, in the order "
            "excluded, at capacity, memory, latency, budget."
        ),
    )
    binding_constraint: str | None = Field(
        default=None, description="When nothing is feasible: the constraint whose relaxation would help most."
    )
    infeasible_reason: str | None = Field(
        default=None, description="When nothing is feasible: e.g. 'needs 22.4 GiB per GPU; best has 16 GiB (srv-x)'."
    )
    alternatives: list[Alternative] = Field(
        default_factory=list, max_length=10, description="The top-ranked servers (chosen first), at most 10."
    )
    estimate: ResourceEstimate | None = Field(default=None, description="The estimate used for the chosen server.")
