# -*- coding: utf-8 -*-
# Copyright: craftlb developers
# Apache License 2.0 (see LICENSE)
"""Runs a craftlb.aws module: the static binary built for the target's CPU.

Every module of the collection is one multi-call binary per platform,
shipped as dist/modules/craftlb_modules_linux_<arch> (not in plugins/modules,
where ansible-test expects text files, nor in bin/, which it reads as Python).
Each module's action plugin (plugins/action/<module>.py) is this class. It
picks the binary for the host the module runs on, lets Ansible's module
loader see it, and runs it the way Ansible runs any binary module (args
file, check mode, become, async, environment all unchanged). The binary
learns which module it is from _ansible_module_name, which Ansible puts in
the arguments.

The host's CPU comes from, in order: the variable craftlb_module_arch,
gathered facts (ansible_facts.architecture), the controller itself when the
connection is local, else one `uname -m` on the host.
"""
from __future__ import annotations

import os
import platform

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

# What uname, facts and users call each CPU -> the name in the binary's file name.
_ARCHES = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
}

_BIN_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "dist", "modules"
)


def binary_name(arch):
    return "craftlb_modules_linux_%s" % arch


class BinaryModuleAction(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(BinaryModuleAction, self).run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        reported = self._host_arch(task_vars)
        arch = _ARCHES.get(str(reported).strip().lower())
        if arch is None:
            raise AnsibleActionFail(
                "craftlb.aws modules are built for Linux x86_64 and aarch64; the host reports "
                "architecture %r (set craftlb_module_arch to override)" % (reported,)
            )
        self._craftlb_binary = binary_name(arch)
        if not os.path.isfile(os.path.join(_BIN_DIR, self._craftlb_binary)):
            present = sorted(f for f in os.listdir(_BIN_DIR) if f.startswith("craftlb_modules_")) if os.path.isdir(_BIN_DIR) else []
            raise AnsibleActionFail(
                "this craftlb.aws collection has no %s binary in %s (it holds: %s)"
                % (arch, _BIN_DIR, ", ".join(present) or "none")
            )
        # The worker process running this task is forked per task: adding
        # the directory here does not leak into other tasks or hosts.
        self._shared_loader_obj.module_loader.add_directory(_BIN_DIR)
        wrap_async = self._task.async_val
        result = merge_hash(
            result,
            self._execute_module(module_name=self._task.action, task_vars=task_vars, wrap_async=wrap_async),
        )
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _configure_module(self, module_name, module_args, task_vars):
        # module_name (the task's FQCN) already went into the arguments as
        # _ansible_module_name; the file to run is the platform's binary.
        return super(BinaryModuleAction, self)._configure_module(self._craftlb_binary, module_args, task_vars)

    def _host_arch(self, task_vars):
        host_vars = task_vars
        if self._task.delegate_to:
            host_vars = task_vars.get("ansible_delegated_vars", {}).get(self._task.delegate_to, {})
        override = host_vars.get("craftlb_module_arch") or task_vars.get("craftlb_module_arch")
        if override:
            return override
        fact = (host_vars.get("ansible_facts") or {}).get("architecture")
        if fact:
            return fact
        if getattr(self._connection, "_remote_is_local", False) or self._connection.transport == "local":
            return platform.machine()
        res = self._low_level_execute_command("uname -m")
        if res.get("rc") != 0:
            raise AnsibleActionFail(
                "cannot tell the host's architecture: `uname -m` exited %s: %s"
                % (res.get("rc"), (res.get("stderr") or "").strip())
            )
        return res.get("stdout", "").strip()
