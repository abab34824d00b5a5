"""What a check raises: a violated property, or a check that could not test anything."""


class PropertyViolation(AssertionError):
    """A layer broke a property on an input: the message names the property, the layer, the
    input (dtype, shape, unmasked rows, scale) and the measured error against the tolerance.

    An `AssertionError`, so pytest and hypothesis report it as a failed test (and hypothesis
    shrinks the input that caused it).

    **Attributes:** `property_name`, `error` (the measured relative error; `inf` for a
    non-finite result) and `tolerance`.
    """

    def __init__(self, property_name: str, error: float, tolerance: float, message: str):
        super().__init__(message)
        self.property_name = property_name
        self.error = error
        self.tolerance = tolerance


class VacuousCheck(ValueError):
    """A check was given an input on which it cannot test anything (an empty set, every row
    masked, a non-finite reference value, a zero gradient to compare, a permutation that
    cannot reorder anything, fewer than two sets): it refuses rather than pass.

    Inside `@given`, draw inputs that avoid the case (the strategies of
    [`eqx_agg.testing`][] do) or reject them with `hypothesis.assume`.
    """
