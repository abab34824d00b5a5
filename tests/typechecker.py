"""The runtime type checker the test suite runs on `eqx_agg` and `solvers` (see pyproject).

beartype, accepting `int` where `float` is annotated (PEP 484's numeric tower), as users pass
`gtol=0`.
"""

from beartype import BeartypeConf, beartype

typechecker = beartype(conf=BeartypeConf(is_pep484_tower=True))
