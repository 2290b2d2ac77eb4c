"""Symbolic derivations behind kren (SymPy).

- :mod:`derivations.action`: the effective actions S(Q, Q̄) of THEORY §3 as matrix-level SymPy
  expressions, their gradients (derived by differentials and verified elementwise on explicit
  small matrices), the FC eigenbasis forms, and the predictor statistics of THEORY §4.
- :mod:`derivations.printer`: a NumPy printer that prints those expressions in terms of the
  primitives of :mod:`kren.linalg` (Cholesky solves, never explicit inverses).
- :mod:`derivations.codegen`: writes ``kren/generated/*.py`` (``python -m derivations.codegen``).
"""
