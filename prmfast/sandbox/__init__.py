"""Batched, sandboxed execution of generated code against unit tests (docs/design.md, "Sandbox")."""
from prmfast.sandbox.sandbox import LAYERS, Sandbox, available_layers
from prmfast.sandbox.specs import AssertTests, CallTests, Job, Result, StdioTests, TestSpec

__all__ = ["AssertTests", "CallTests", "Job", "LAYERS", "Result", "Sandbox", "StdioTests",
           "TestSpec", "available_layers"]
