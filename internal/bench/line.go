package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// errInterrupted is wrapped by the error of a run cut short (Ctrl-C): the
// lines printed before it are whole measurements, and nothing after it
// was measured.
var errInterrupted = errors.New("bench: interrupted before the run was complete; the lines printed before this are whole measurements, the rest was not measured")

// writeLine prints r as one JSON line, unless ctx is done: a measurement
// the interrupt cut short counts only what ran before it, and printed it
// would read as a result.
func writeLine(ctx context.Context, out io.Writer, r any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", errInterrupted, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("bench: encode a result line: %w", err)
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}
