// Python bindings: the Dispatcher (caller side), the fork server's loop, and the
// primitives the server uses to set itself up.
#include <errno.h>
#include <malloc.h>
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

namespace {

[[noreturn]] void raise_errno(const char* what) {
  PyErr_SetFromErrnoWithFilename(PyExc_OSError, what);
  throw py::error_already_set();
}

}  // namespace

PYBIND11_MODULE(_sandbox, m) {
  m.doc() = "prmfast sandbox: batch dispatcher, fork server loop, confinement primitives";

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
      [](int sock, bool userns, bool pidns, bool ipcns, bool setuid, bool landlock, bool rlimits,
         bool seccomp, unsigned uid_base,
         const std::string& base, const std::vector<std::string>& readable,
         const std::string& cgroup,
         py::function judge_entry, py::function child_entry) {
        ServerConfig cfg;
        cfg.userns = userns;
        cfg.pidns = pidns;
        cfg.ipcns = ipcns;
        cfg.setuid = setuid;
        cfg.landlock = landlock;
        cfg.rlimits = rlimits;
        cfg.seccomp = seccomp;
        cfg.uid_base = uid_base;
        cfg.base = base;
        cfg.readable = readable;
        cfg.cgroup = cgroup;
        cfg.judge_entry = judge_entry.ptr();  // kept alive by the caller's frame
        cfg.child_entry = child_entry.ptr();
        serve_jobs(sock, cfg);
      },
      py::arg("sock"), py::arg("userns"), py::arg("pidns"), py::arg("ipcns"), py::arg("setuid"),
      py::arg("landlock"), py::arg("rlimits"), py::arg("seccomp"), py::arg("uid_base"),
      py::arg("base"), py::arg("readable"), py::arg("cgroup"), py::arg("judge_entry"),
      py::arg("child_entry"),
      "Run the fork server loop; never returns. Each forked judge runs "
      "judge_entry(slot, server_sock, zygote_sock), each untrusted child, already confined, "
      "child_entry(mode, workdir). Holds the GIL: the server is single-threaded and the "
      "fork hooks need it.");
  m.def("remove_tree", &remove_tree, py::arg("path"),
        "rm -rf that follows no symlink and crosses no mount.");
  m.def("unshare", [](int flags) {
    if (unshare(flags) != 0) raise_errno("unshare");
  }, py::arg("flags"));
  m.def(
      "mount",
      [](const std::string& source, const std::string& target, const std::string& fstype,
         unsigned long flags, const std::string& data) {
        auto opt = [](const std::string& s) { return s.empty() ? nullptr : s.c_str(); };
        if (mount(opt(source), target.c_str(), opt(fstype), flags, opt(data)) != 0)
          raise_errno(target.c_str());
      },
      py::arg("source"), py::arg("target"), py::arg("fstype"), py::arg("flags"),
      py::arg("data") = "");
  for (auto [name, value] : {std::pair<const char*, unsigned long>{"MS_RDONLY", MS_RDONLY},
                             {"MS_NOSUID", MS_NOSUID}, {"MS_NODEV", MS_NODEV},
                             {"MS_REMOUNT", MS_REMOUNT}, {"MS_BIND", MS_BIND},
                             {"MS_REC", MS_REC}, {"MS_PRIVATE", MS_PRIVATE}})
    m.attr(name) = value;
  m.def(
      "become_pid1",
      []() {
        if (unshare(CLONE_NEWPID) != 0) raise_errno("unshare(CLONE_NEWPID)");
        if (!continue_as_pid1()) raise_errno("fork into the new PID namespace");
      },
      "Go on as PID 1 of a new PID namespace (in a forked process; see server.py).");
  m.def("landlock_abi", &landlock_abi);
  m.def("seccomp_available", &seccomp_available,
        "Whether the seccomp layer's filter can be installed here (x86_64 or aarch64 build, "
        "Linux >= 4.14).");
  m.def("user_namespaces_work", &user_namespaces_work,
        "Whether the userns layer works here (tried in a forked process).");
  m.def(
      "enter_user_namespace",
      [](unsigned uid, unsigned gid) {
        const char* what = "";
        if (enter_user_namespace(uid, gid, &what) != 0) raise_errno(what);
      },
      py::arg("outside_uid"), py::arg("outside_gid"),
      "Become root of a new user namespace whose ids 0 are these ids of the current one.");
  m.def("malloc_trim", []() { return malloc_trim(0) != 0; },
        "Give free heap memory back to the kernel (smaller forks; see server.py).");
  m.attr("CLONE_NEWPID") = CLONE_NEWPID;
  m.attr("CLONE_NEWNET") = CLONE_NEWNET;
  m.attr("CLONE_NEWNS") = CLONE_NEWNS;
}
