//go:build unix && !linux

package main

import "syscall"

// diesWithParent would make a child die with this one; only Linux can
// (Pdeathsig). Elsewhere a child outlives a parent that is killed with
// SIGKILL; on SIGTERM or Ctrl-C the devnet stops its children itself.
func diesWithParent() *syscall.SysProcAttr { return nil }

// detached makes a child outlive this command (its own session).
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

// killPID sends SIGKILL.
func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// exists reports whether a process with the ID exists (a zombie does).
func exists(pid int) bool { return syscall.Kill(pid, 0) == nil }
