package main

import "syscall"

// diesWithParent makes a child process die with this one, however this
// one dies (even SIGKILL).
func diesWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// detached makes a child outlive this command (its own session).
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

// killPID sends SIGKILL.
func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// exists reports whether a process with the ID exists (a zombie does).
func exists(pid int) bool { return syscall.Kill(pid, 0) == nil }
