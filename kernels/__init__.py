"""Triton kernels (imported as prmfast.kernels.triton)."""
