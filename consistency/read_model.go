package consistency

import (
	"errors"
	"fmt"
	"time"
)

// Class is how a read model relates to the writes it reflects.
type Class string

const (
	// Strong: the read model is updated in the same unit of work as the
	// events (projections apply strong read models in an append hook, so
	// every append through the store or a unit updates them), and a read
	// after a write always sees it: no token is needed. An append that
	// bypasses the hook (pgstore.AppendTx on a transaction of the caller's,
	// which the projections refuse for such events) would break this.
	Strong Class = "strong"
	// Eventual: the read model is updated by a projection after the events
	// commit. Reading your own writes needs a consistency token; any other
	// read may lag by up to the model's SLA.
	Eventual Class = "eventual"
)

// ReadModel declares one read model and what API consumers may expect of
// it.
type ReadModel struct {
	// Name is the read model's projection name, as the Tracker knows it.
	Name string
	// Class says whether reads are strongly or eventually consistent.
	Class Class
	// Description says what the read model answers, for the docs.
	Description string
	// SLA is the propagation delay the read model is expected to stay
	// within. Required for Eventual, and must be zero for Strong, which has
	// no delay.
	SLA time.Duration
}

func (m ReadModel) validate() error {
	switch {
	case m.Name == "":
		return errors.New("consistency: ReadModel.Name is empty (use the projection name the Tracker is advanced with)")
	case m.Class != Strong && m.Class != Eventual:
		return fmt.Errorf("consistency: read model %q: Class is %q, want consistency.Strong or consistency.Eventual", m.Name, m.Class)
	case m.Class == Eventual && m.SLA <= 0:
		return fmt.Errorf("consistency: read model %q is Eventual but has no SLA (say how long it may lag, such as 2*time.Second)", m.Name)
	case m.Class == Strong && m.SLA != 0:
		return fmt.Errorf("consistency: read model %q is Strong but has SLA %s (strong read models have no delay: drop the SLA or declare it Eventual)", m.Name, m.SLA)
	}
	return nil
}
