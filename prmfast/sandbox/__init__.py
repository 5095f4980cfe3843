"""Batched, sandboxed execution of generated code against unit tests (DESIGN 3.2)."""
from prmfast.sandbox.specs import AssertTests, CallTests, Job, Result, StdioTests, TestSpec

__all__ = ["AssertTests", "CallTests", "Job", "Result", "StdioTests", "TestSpec"]
