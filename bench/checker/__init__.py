"""The bundled checkers: each reads only the history and decides whether the service kept its
promises. They are found like any other through the ``lockbench.checkers`` entry points
(pyproject.toml); bench/checking.py runs them on a history read and paired once."""
