"""Only here so setuptools builds nixffi's cffi extension; metadata lives in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["nixffi/_build.py:ffibuilder"])
