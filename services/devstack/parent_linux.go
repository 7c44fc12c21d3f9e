package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// lockData holds dir for this process: a second stack on the same
// JetStream files corrupts them. The lock goes with the process, however
// it ends; the file names the holder.
func lockData(dir string) error {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("another stack uses %s (pid %s): stop it, or give this one its own -data", dir, strings.TrimSpace(string(holder)))
		}
		return err
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	locks = append(locks, f) // held open until the process ends
	return nil
}

var locks []*os.File
