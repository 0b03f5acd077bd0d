package command

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/rowjson"
)

// fitRejection returns ev with reason as its Reason, stored as free text
// is (see storable), and cut further when the encoded event would exceed
// maxPayload bytes as the store counts it (events.PayloadReadBackSize):
// JSON writes '<', '>', '&' and control characters as
// six-byte escapes, so a reason under the 4 KiB cut can still take 24
// KiB, over a store's lowered Limits.MaxPayloadBytes, and a Rejected
// event the store refuses would fail the delivery for ever. It keeps as
// much of the reason as fits, saying how long it was.
func fitRejection(ev Rejected, reason string, maxPayload int) (Rejected, error) {
	text := strings.ReplaceAll(strings.ToValidUTF8(reason, "\uFFFD"), "\x00", "\uFFFD")
	size := func(r string) int {
		ev.Reason = r
		b, err := json.Marshal(ev)
		if err != nil { // a struct of strings always encodes
			panic(err)
		}
		// The limit counts the payload as PostgreSQL gives it back.
		n, err := events.PayloadReadBackSize(b)
		if err != nil { // json.Marshal writes what it checks
			panic(err)
		}
		return n
	}
	first := rowjson.Clip(text, maxText)
	if size(first) <= maxPayload {
		ev.Reason = first
		return ev, nil
	}
	// Clip(text, n) for n below both is a cut one; its size grows with n.
	n := min(len(text), maxText)
	fits := sort.Search(n, func(c int) bool { return size(rowjson.Clip(text, c)) > maxPayload }) - 1
	if fits < 0 {
		need := min(size(first), size(rowjson.Clip(text, 0)))
		return Rejected{}, fmt.Errorf("its Rejected event takes %d bytes even with the reason cut to nothing, over the store's Limits.MaxPayloadBytes of %d (raise Limits.MaxPayloadBytes to at least %d)",
			need, maxPayload, need)
	}
	ev.Reason = rowjson.Clip(text, fits)
	return ev, nil
}
