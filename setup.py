"""Builds the package and the C++ sandbox dispatcher (prmfast._sandbox, pybind11).

The Triton kernel sources live in the top-level kernels/ folder and are installed as
the subpackage prmfast.kernels.triton (the symlink prmfast/kernels/triton -> ../../kernels)."""
from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

ext_modules = [
    Pybind11Extension(
        "prmfast._sandbox",
        sorted(glob("csrc/*.cpp")),
        include_dirs=["csrc"],
        cxx_std=17,
        extra_compile_args=["-O2", "-Wall"],
    )
]

setup(
    # kernels/ has no __init__.py (so it never shadows an installed `kernels` distribution);
    # prmfast/kernels/triton is a symlink to it, imported as a namespace subpackage.
    packages=find_packages(include=["prmfast", "prmfast.*"]) + ["prmfast.kernels.triton"],
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
)
