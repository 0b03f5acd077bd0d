package web

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/converge-es/converge/saga"
)

// sagaStatuses are the statuses GET /api/sagas?status= takes: the saga
// engine's, which SagaSummary.Status reports.
var sagaStatuses = []string{
	string(saga.StatusRunning), string(saga.StatusParked), string(saga.StatusCompensating),
	string(saga.StatusCompleted), string(saga.StatusFailed), string(saga.StatusCancelled),
}

// sagaList is the body of GET /api/sagas.
type sagaList struct {
	// Counts is how many instances are in each status, over all of them.
	Counts map[string]int `json:"counts"`
	// Sagas are the instances the query selected.
	Sagas []SagaSummary `json:"sagas"`
}

// listSagas is GET /api/sagas[?status=S][&stuck=true][&limit=N].
func (s *Server) listSagas(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for _, param := range []string{"status", "stuck", "limit"} {
		// Get reads the first of a repeated parameter: ?status=failed&
		// status=running would list the failed ones alone, silently.
		if vs := q[param]; len(vs) > 1 {
			s.badParam(w, param, strings.Join(vs, ","), param+" is given "+strconv.Itoa(len(vs))+" times: give it once")
			return
		}
	}
	f := SagaFilter{Status: q.Get("status"), Limit: DefaultSagaLimit}
	if f.Status != "" && !slices.Contains(sagaStatuses, f.Status) {
		// Passed on, a status no instance can have would list none: a
		// typo would read as "nothing failed".
		s.badParam(w, "status", f.Status, "status must be one of "+strings.Join(sagaStatuses, ", ")+" (or left out for every status)")
		return
	}
	if raw := q.Get("stuck"); raw != "" {
		stuck, err := strconv.ParseBool(raw)
		if err != nil {
			s.badParam(w, "stuck", raw, "stuck must be true or false")
			return
		}
		f.Stuck = stuck
	}
	if raw := q.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 500 {
			s.badParam(w, "limit", raw, "limit must be a whole number from 1 to 500")
			return
		}
		f.Limit = n
	}
	counts, err := s.cfg.Ops.SagaCounts(r.Context())
	if err != nil {
		s.writeError(w, err)
		return
	}
	sagas, err := s.cfg.Ops.Sagas(r.Context(), f)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if counts == nil {
		counts = map[string]int{}
	}
	if sagas == nil {
		sagas = []SagaSummary{}
	}
	writeJSON(w, http.StatusOK, sagaList{Counts: counts, Sagas: sagas})
}

// getSaga is GET /api/sagas/{id}: one instance with its timeline.
func (s *Server) getSaga(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d, err := s.cfg.Ops.Saga(r.Context(), id)
	if err != nil {
		s.sagaError(w, id, err)
		return
	}
	if d.Timeline == nil {
		d.Timeline = []TimelineEntry{}
	}
	writeJSON(w, http.StatusOK, d)
}

// actionBody is the body of POST /api/sagas/{id}/retry and /cancel: an
// empty object, which may be left out.
var actionBody = bodyShape{what: "an empty JSON object", example: `{}`, emptyOK: true}

// sagaAction is POST /api/sagas/{id}/retry and /cancel: 202, the engine
// acts asynchronously. The dashboard sends JSON, so a cross-site form
// cannot trigger it without a CORS preflight.
func (s *Server) sagaAction(act func(ctx context.Context, id string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !isJSON(r) {
			writeProblem(w, newProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType, "Unsupported media type",
				`send "Content-Type: application/json" (the body may be {})`))
			return
		}
		// The body says nothing yet, but a route that reads none would take
		// any body (a megabyte, a typo'd option) and act on it.
		var none struct{}
		if !s.decode(w, r, &none, actionBody) {
			return
		}
		id := r.PathValue("id")
		if err := act(r.Context(), id); err != nil {
			s.sagaError(w, id, err)
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "status": "accepted"})
	}
}

func (s *Server) sagaError(w http.ResponseWriter, id string, err error) {
	switch {
	case errors.Is(err, ErrSagaNotFound):
		writeProblem(w, newProblem(http.StatusNotFound, ProblemNotFound, "Saga instance not found", "there is no saga instance "+strconv.Quote(truncate(id))))
	case errors.Is(err, ErrSagaConflict):
		writeProblem(w, newProblem(http.StatusConflict, ProblemConflict, "Action not allowed", err.Error()))
	default:
		s.writeError(w, err)
	}
}

// deadLetters is GET /api/dead-letters.
func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) {
	dls, err := s.cfg.Ops.DeadLetters(r.Context())
	if err != nil {
		s.writeError(w, err)
		return
	}
	if dls == nil {
		dls = []DeadLetter{}
	}
	writeJSON(w, http.StatusOK, map[string][]DeadLetter{"dead_letters": dls})
}

// lagHistory is GET /api/lag: every projection's lag over the window.
func (s *Server) lagHistory(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.cfg.Lag.Snapshot(s.cfg.Clock.Now()))
}

func (s *Server) badParam(w http.ResponseWriter, param, value, detail string) {
	p := newProblem(http.StatusBadRequest, ProblemInvalidParameter, "Invalid query parameter", detail)
	p.Parameter, p.Value = param, truncate(value)
	writeProblem(w, p)
}
