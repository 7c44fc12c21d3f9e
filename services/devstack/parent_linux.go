package main

import (
	"os/exec"
	"syscall"
)

// diesWithParent has the kernel send cmd SIGTERM when devstack dies, even
// by SIGKILL, which leaves no time to stop it.
func diesWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// dieWithParent has the kernel send devstack SIGTERM when the process
// that started it dies (`go run`, make), so a stack whose launcher was
// killed stops instead of holding its ports for good.
func dieWithParent() {
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0)
}
