"""Energies `E(X, y) = R(y) + Σ_i F(x_i, y)`: analytic (Table 1, Appendix B) and learned."""

from ._abstract import AbstractEnergy as AbstractEnergy
from ._analytic import Max as Max
from ._analytic import Mean as Mean
from ._analytic import Median as Median
from ._analytic import Sum as Sum
from ._attention import Attention as Attention
from ._neural import Neural as Neural
