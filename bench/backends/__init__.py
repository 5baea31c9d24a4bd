"""The bundled backends (``reference``, ``memory``), found like any other through the
``lockbench.backends`` entry points (pyproject.toml); loading is bench/runner/components.py."""
