// Placeholder module body; the sandbox issue replaces this file with the real dispatcher.
#include <pybind11/pybind11.h>
PYBIND11_MODULE(_sandbox, m) { m.doc() = "prmfast sandbox dispatcher"; }
