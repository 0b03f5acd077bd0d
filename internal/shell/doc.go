// Package shell quotes text for a POSIX shell, so that a command converge
// prints (a replay line, the next page's flag) can be pasted as it is.
package shell
