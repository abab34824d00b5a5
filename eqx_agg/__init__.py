"""eqx_agg: set aggregation layers defined by an optimisation problem, in JAX + Equinox."""

from . import energies as energies
from . import pooling as pooling
from ._abstract import AbstractAggregation as AbstractAggregation
from ._abstract import AbstractSolvedAggregation as AbstractSolvedAggregation
from ._aggregation import EquilibriumAggregation as EquilibriumAggregation
from ._contraction_penalty import contraction_penalty as contraction_penalty
from ._factory import POOLINGS as POOLINGS
from ._factory import make_pooling as make_pooling
from ._inner_steps import with_inner_steps as with_inner_steps
from ._mlp import ResidualMLP as ResidualMLP
from ._otke import OTKE as OTKE
from ._recommend import Recommendation as Recommendation
from ._recommend import default_candidates as default_candidates
from ._recommend import recommend_backend as recommend_backend
from ._rotp import ROTP as ROTP
