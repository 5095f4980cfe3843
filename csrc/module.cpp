// Python bindings: the Dispatcher (caller side) and the confinement primitives (child side).
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>

#include <utility>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "confine.h"
#include "dispatcher.h"
#include "forkserver.h"

namespace py = pybind11;
using namespace prmfast;

PYBIND11_MODULE(_sandbox, m) {
  m.doc() = "prmfast sandbox: batch dispatcher and child-side confinement primitives";

  py::class_<Outcome>(m, "Outcome")
      .def_property_readonly("result", [](const Outcome& o) { return py::bytes(o.result); })
      .def_readonly("wait_status", &Outcome::wait_status)
      .def_readonly("timed_out", &Outcome::timed_out)
      .def_readonly("lost", &Outcome::lost)
      .def_readonly("wall_s", &Outcome::wall_s);

  py::class_<Dispatcher>(m, "Dispatcher")
      .def(py::init<std::vector<std::string>, std::vector<std::string>>(), py::arg("argv"),
           py::arg("env"))
      .def("run", &Dispatcher::run, py::arg("payloads"), py::arg("deadlines_s"),
           py::arg("workers"), py::arg("result_limit") = 1 << 20,
           py::call_guard<py::gil_scoped_release>(),
           "Run the payloads; returns one Outcome per payload, in order.")
      .def_property_readonly("server_pid", &Dispatcher::server_pid)
      .def("close", &Dispatcher::close, py::call_guard<py::gil_scoped_release>());

  m.def(
      "serve_jobs",
      [](int sock, bool new_pid_namespace, const std::string& base) {
        JobStart s = serve_jobs(sock, new_pid_namespace, base);
        return py::make_tuple(s.job, s.slot, s.payload_fd, s.result_fd);
      },
      py::arg("sock"), py::arg("new_pid_namespace"), py::arg("base"),
      "Run the fork server loop; returns (job, slot, payload_fd, result_fd) only in a forked "
      "judge. Holds the GIL: the server is single-threaded and the fork hooks need it.");
  m.def("unshare", &unshare_ns, py::arg("flags"));
  m.def("mount", &mount_fs, py::arg("source"), py::arg("target"), py::arg("fstype"),
        py::arg("flags"), py::arg("data") = "");
  for (auto [name, value] : {std::pair<const char*, unsigned long>{"MS_RDONLY", MS_RDONLY},
                             {"MS_NOSUID", MS_NOSUID}, {"MS_NODEV", MS_NODEV},
                             {"MS_REMOUNT", MS_REMOUNT}, {"MS_BIND", MS_BIND},
                             {"MS_REC", MS_REC}, {"MS_PRIVATE", MS_PRIVATE}})
    m.attr(name) = value;
  m.def("set_parent_death_signal", &set_parent_death_signal, py::arg("sig"));
  m.def(
      "apply_limits",
      [](long address_space_mb, long cpu_s, long file_size_mb, long open_files, long processes) {
        apply_limits(Limits{address_space_mb, cpu_s, file_size_mb, open_files, processes});
      },
      py::arg("address_space_mb") = 0, py::arg("cpu_s") = 0, py::arg("file_size_mb") = 0,
      py::arg("open_files") = 0, py::arg("processes") = 0);
  m.def("drop_privileges", &drop_privileges, py::arg("uid"), py::arg("gid"));
  m.def("landlock_abi", &landlock_abi);
  m.def("landlock_restrict", &landlock_restrict, py::arg("writable"));
  m.attr("CLONE_NEWPID") = CLONE_NEWPID;
  m.attr("CLONE_NEWNET") = CLONE_NEWNET;
  m.attr("CLONE_NEWNS") = CLONE_NEWNS;
}
