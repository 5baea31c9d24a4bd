"""Builds the optional compiled core of the checker's search (bench/checker/_wgl_native.c).

Everything else is in pyproject.toml. The extension is optional: without a C compiler or the
Python headers the install still succeeds and the checker uses its pure-Python search.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bench.checker._wgl_native",
            sources=["bench/checker/_wgl_native.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
