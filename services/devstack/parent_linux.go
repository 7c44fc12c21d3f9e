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
