"""Property tests for aggregation layers, yours included: hypothesis strategies that draw the
inputs that break such layers, and checks of the properties every aggregation should have.

An optional part of eqx_agg (`pip install 'eqx_agg[testing]'`, for hypothesis), imported as
`import eqx_agg.testing`. Each check is a plain function, usable inside `@given` or alone:
it returns the error it measured, raises [`eqx_agg.testing.PropertyViolation`][] (an
`AssertionError`) when the property fails, and [`eqx_agg.testing.VacuousCheck`][] (a
`ValueError`) when its input cannot test anything.
"""

from ._batching import check_batch_independence as check_batch_independence
from ._errors import PropertyViolation as PropertyViolation
from ._errors import VacuousCheck as VacuousCheck
from ._gradients import GradientError as GradientError
from ._gradients import check_backends_agree as check_backends_agree
from ._gradients import check_gradient as check_gradient
from ._invariance import check_padding_invariance as check_padding_invariance
from ._invariance import check_permutation_invariance as check_permutation_invariance
from ._special_cases import check_special_case as check_special_case
from ._strategies import MAX_SET as MAX_SET
from ._strategies import SCALES as SCALES
from ._strategies import DrawnSegments as DrawnSegments
from ._strategies import DrawnSet as DrawnSet
from ._strategies import segmented_sets as segmented_sets
from ._strategies import sets as sets
