"""eqx_agg: set aggregation layers defined by an optimisation problem, in JAX + Equinox."""

from . import energies as energies
from . import pooling as pooling
from ._aggregation import EquilibriumAggregation as EquilibriumAggregation
from ._mlp import ResidualMLP as ResidualMLP
from ._otke import OTKE as OTKE
from ._rotp import ROTP as ROTP
