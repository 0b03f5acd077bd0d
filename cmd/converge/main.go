package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Ctrl-C or a SIGTERM from the process manager cancels the command's
	// context, so long-running commands stop gracefully.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := execute(ctx, newRootCmd())
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "converge:", err)
		// Commands with a documented exit code (lag --fail-on-breach: 3)
		// say so through ExitCode; everything else is 1.
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}
