from . import typechecker as typechecker  # the runtime type checker named in pyproject
