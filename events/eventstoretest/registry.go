package eventstoretest

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/converge-es/converge/events"
)

// The suite's stored type names. They are stable strings, like any event
// type name, and namespaced so they never collide with an application's.
const (
	orderPlacedType    = "eventstoretest.order_placed"
	counterBumpedType  = "eventstoretest.counter_bumped"
	addressChangedType = "eventstoretest.address_changed"
	// neverRegisteredType is stored through events.Raw and never registered,
	// to check decode errors for unknown names.
	neverRegisteredType = "eventstoretest.never_registered"
	// counterIncrementedType is counterBumped's old name, kept as an alias
	// after a rename.
	counterIncrementedType = "eventstoretest.counter_incremented"
)

// orderPlaced is the suite's plain event type.
type orderPlaced struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
	Note    string `json:"note,omitempty"`
}

// counterBumped is written by the concurrency tests.
type counterBumped struct {
	Writer int `json:"writer"`
	N      int `json:"n"`
}

// addressChanged is at schema version 2. Version 1 stored the whole address
// in one string; the upcaster splits it.
type addressChanged struct {
	Street string `json:"street"`
	City   string `json:"city"`
}

// notRegistered is never registered, to check encode errors.
type notRegistered struct{ X int }

// Registry returns a fresh registry holding the suite's event types,
// including one at schema version 2 with an upcaster from version 1 and one
// renamed, its old name kept as an alias. Stores
// under test must be constructed with it (a fresh one per store is fine):
// Run appends and decodes these types and fails at once if the store's
// registry does not know them.
func Registry() *events.Registry {
	reg := events.NewRegistry()
	events.Register[orderPlaced](reg, orderPlacedType)
	events.Register[counterBumped](reg, counterBumpedType)
	if err := reg.Alias(counterIncrementedType, counterBumpedType); err != nil {
		panic(err)
	}
	events.RegisterVersioned[addressChanged](reg, addressChangedType, 2, events.Upcaster{From: 1, Func: addressV1toV2})
	return reg
}

// addressV1toV2 turns {"address": "1 Main St, Springfield"} into
// {"street": "1 Main St", "city": "Springfield"}.
func addressV1toV2(payload json.RawMessage) (json.RawMessage, error) {
	var v1 struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(payload, &v1); err != nil {
		return nil, err
	}
	street, city, ok := strings.Cut(v1.Address, ", ")
	if !ok {
		return nil, fmt.Errorf("address %q has no \", \" between street and city", v1.Address)
	}
	return json.Marshal(addressChanged{Street: street, City: city})
}
