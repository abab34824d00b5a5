"""Linear solvers for Implicit's backward pass: lineax's, solved per set."""

from ._per_set import LinearSolveStats as LinearSolveStats
from ._per_set import solve_per_set as solve_per_set
from ._shortcuts import DEFAULT_MAXITER as DEFAULT_MAXITER
from ._shortcuts import DEFAULT_TOLERANCE as DEFAULT_TOLERANCE
from ._shortcuts import SHORTCUTS as SHORTCUTS
from ._shortcuts import check_linear_solver as check_linear_solver
from ._shortcuts import from_shortcut as from_shortcut
