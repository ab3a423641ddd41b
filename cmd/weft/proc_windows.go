package main

import (
	"os"
	"syscall"
)

// diesWithParent would make a child die with this one; Windows cannot
// without a job object. A child outlives a parent that is killed; on
// Ctrl-C the devnet stops its children itself.
func diesWithParent() *syscall.SysProcAttr { return nil }

// detached makes a child outlive this command: its own process group, so
// this console's Ctrl-C does not reach it.
func detached() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}

// killPID ends a process at once (TerminateProcess).
func killPID(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

// exists reports whether a process with the ID exists.
func exists(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	_ = p.Release()
	return true
}
