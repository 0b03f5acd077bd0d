package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
)

// PropagationConfig configures the propagation scenario.
type PropagationConfig struct {
	// Rate is the steady append rate in events per second. Defaults to 500.
	Rate int
	// Duration is how long each method appends. Defaults to 7s, so the
	// three methods finish within 30s. An unmeasured warm-up of a fifth of
	// it (at most 1s) runs first.
	Duration time.Duration
	// Methods lists the methods to run, in order, after the baseline
	// (MethodPoll50ms, which always runs first and is left out of this
	// list if named). Defaults to poll_1s, push (push last).
	Methods []string
}

// PropagationResult is one JSON line of the propagation scenario.
type PropagationResult struct {
	Scenario string `json:"scenario"`
	Method   string `json:"method"`
	// Rate is the append rate asked for (--rate).
	Rate int `json:"rate"`
	// AppendedPerSec is the rate this method's appends reached, from the
	// first append's commit to the last's. Below Rate, the method was
	// measured at a lower load than asked (the summary says so below 90%).
	AppendedPerSec float64 `json:"appended_per_sec"`
	Events         int     `json:"events"`
	P50Ms          float64 `json:"p50_ms"`
	P95Ms          float64 `json:"p95_ms"`
	P99Ms          float64 `json:"p99_ms"`
	// Stale counts waits that hit their deadline (push only).
	Stale int `json:"stale,omitempty"`
	// Baseline names the method this line is compared with: always
	// MethodPoll50ms, the seed's own polling loop.
	Baseline string `json:"baseline"`
	// BaselineP99Ms is the baseline's p99 in the same run.
	BaselineP99Ms float64 `json:"baseline_p99_ms"`
	// Ratio is BaselineP99Ms / P99Ms: how many times sooner than the
	// baseline this method's slowest 1% of waiters learn that their write
	// is visible. Above 1 is better than polling every 50 ms; the baseline's
	// own line says 1.
	Ratio float64 `json:"ratio"`
}

// The methods of the propagation scenario.
const (
	MethodPush     = "push"
	MethodPoll1s   = "poll_1s"
	MethodPoll50ms = "poll_50ms"
)

const benchProjection = "bench_projection"

// pollerConns is the size of the pool the polling baselines read the
// checkpoint on, apart from the appenders' pool.
const pollerConns = 4

// Propagation measures, per event, the time from its append's commit to a
// waiter learning that a projection has processed it, in the shape of a real
// deployment: one store stands for the web process (it appends and waits)
// and another for the projection process (its own listen connection and a
// Watermill router whose handler writes a read-model row through its unit
// of work, committed with the checkpoint). The push method waits with consistency.Tracker,
// woken by NOTIFY; the baselines poll the checkpoint every 50 ms (the seed's
// loop, the baseline every line's ratio is against, measured first) and
// every second (watermill-sql's default poll interval).
func Propagation(ctx context.Context, pool *pgxpool.Pool, schema string, cfg *PropagationConfig, out io.Writer) ([]PropagationResult, error) {
	res, err := runPropagation(ctx, pool, schema, cfg, out)
	return res, interrupted(ctx, err)
}

func runPropagation(ctx context.Context, pool *pgxpool.Pool, schema string, cfg *PropagationConfig, out io.Writer) ([]PropagationResult, error) {
	c := PropagationConfig{}
	if cfg != nil {
		c = *cfg
	}
	if c.Rate <= 0 {
		c.Rate = 500
	}
	if c.Duration <= 0 {
		c.Duration = 7 * time.Second
	}
	if len(c.Methods) == 0 {
		c.Methods = []string{MethodPoll1s, MethodPush}
	}
	c.Methods = append([]string{MethodPoll50ms}, slices.DeleteFunc(slices.Clone(c.Methods), func(m string) bool { return m == MethodPoll50ms })...)
	quiet := slog.New(slog.DiscardHandler)

	web, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: schema, Logger: quiet})
	if err != nil {
		return nil, err
	}
	defer web.Close()
	proj, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: schema, Logger: quiet})
	if err != nil {
		return nil, err
	}
	defer proj.Close()

	// The polling baselines read the checkpoint on connections of their
	// own: at a high --rate hundreds of pollers wait at once, and on the
	// web store's pool they took the connections its appenders need
	// (poll_50ms appended at 3,000/s of 5,000 asked while push kept the
	// rate), which measured the baseline at a lower load than push.
	pollCfg := pool.Config()
	pollCfg.MaxConns = pollerConns
	pollCfg.MinConns = 0
	pollPool, err := pgxpool.NewWithConfig(ctx, pollCfg)
	if err != nil {
		return nil, fmt.Errorf("bench: the pollers' pool: %w", err)
	}
	defer pollPool.Close()
	pollers, err := pgstore.New(ctx, pollPool, &pgstore.Config{Schema: schema, Logger: quiet, DisableListen: true})
	if err != nil {
		return nil, err
	}
	defer pollers.Close()

	stopProjection, err := runBenchProjection(ctx, proj)
	if err != nil {
		return nil, err
	}
	defer stopProjection()

	tracker, err := consistency.NewTracker(&consistency.TrackerConfig{
		Positions:   web.Checkpoints(),
		Watcher:     web,
		PushHealthy: web.PushHealthy,
		Logger:      quiet,
	})
	if err != nil {
		return nil, err
	}
	if err := tracker.Start(ctx); err != nil {
		return nil, err
	}
	defer func() { _ = tracker.Stop(context.WithoutCancel(ctx)) }()

	// Warm up unmeasured first: the first method would otherwise pay for
	// cold connections and the projection's first deliveries, and since the
	// first method is the baseline that would flatter every ratio.
	warm := func(ctx context.Context, tok events.Token) (bool, error) {
		st, err := tracker.Wait(ctx, tok, benchProjection)
		return st.Stale, err
	}
	if _, err := measurePropagation(ctx, web, c.Rate, min(c.Duration/5, time.Second), warm); err != nil {
		return nil, fmt.Errorf("bench: warm-up: %w", err)
	}

	var results []PropagationResult
	for _, m := range c.Methods {
		var wait func(ctx context.Context, tok events.Token) (bool, error)
		switch m {
		case MethodPush:
			wait = func(ctx context.Context, tok events.Token) (bool, error) {
				st, err := tracker.Wait(ctx, tok, benchProjection)
				return st.Stale, err
			}
		case MethodPoll1s:
			wait = pollWaiter(pollers, time.Second)
		case MethodPoll50ms:
			wait = pollWaiter(pollers, 50*time.Millisecond)
		default:
			return results, fmt.Errorf("bench: unknown propagation method %q", m)
		}
		r, err := measurePropagation(ctx, web, c.Rate, c.Duration, wait)
		if err != nil {
			return results, fmt.Errorf("bench: %s: %w", m, err)
		}
		r.Method = m
		r.Baseline = MethodPoll50ms
		r.BaselineP99Ms = r.P99Ms
		if len(results) > 0 {
			r.BaselineP99Ms = results[0].P99Ms
		}
		r.Ratio = ratio(r.BaselineP99Ms, r.P99Ms)
		results = append(results, r)
		if err := writeLine(ctx, out, r); err != nil {
			return results, err
		}
	}
	return results, nil
}

// pollWaiter is the seed's consistency loop: read the checkpoint, sleep,
// repeat, one loop per waiting request.
func pollWaiter(st *pgstore.Store, every time.Duration) func(context.Context, events.Token) (bool, error) {
	return func(ctx context.Context, tok events.Token) (bool, error) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			pos, err := st.Position(ctx, benchProjection)
			if err != nil {
				return false, err
			}
			if !pos.Before(tok) {
				return false, nil
			}
			if time.Now().After(deadline) {
				return true, nil
			}
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-time.After(every):
			}
		}
	}
}

// runBenchProjection starts the projection process's router: a handler
// that keeps, per stream, the version of its last event, written through
// the delivery's unit (converge's rows, committed with the checkpoint), so
// a consumer that is behind commits many events per round trip.
func runBenchProjection(ctx context.Context, st *pgstore.Store) (stop func(), err error) {
	sub, err := feed.NewSubscriber(st, &feed.SubscriberConfig{ConsumerName: benchProjection, CommitBatch: 100, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		return nil, err
	}
	router.AddMiddleware(middleware.Recoverer)
	router.AddConsumerHandler(benchProjection, feed.TopicAll, sub, func(msg *message.Message) error {
		env, err := feed.EnvelopeFromMessage(msg)
		if err != nil {
			return err
		}
		eu, _ := events.UnitFromContext(msg.Context())
		u, ok := eu.(feed.Unit)
		if !ok {
			return errors.New("bench: the delivery carries no unit")
		}
		return u.Rows().Put(msg.Context(), "bench", "last_version", env.StreamID, json.RawMessage(strconv.FormatInt(env.Version, 10)), env.Token)
	})
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = router.Run(rctx)
	}()
	select {
	case <-router.Running():
	case <-ctx.Done():
		cancel()
		<-done
		return nil, ctx.Err()
	}
	return func() {
		_ = router.Close()
		cancel()
		<-done
		_ = sub.Close()
	}, nil
}

// measurePropagation appends at a steady rate and, for every event, waits
// with wait from the moment its append returned (it has committed).
func measurePropagation(ctx context.Context, st *pgstore.Store, rate int, d time.Duration, wait func(context.Context, events.Token) (bool, error)) (PropagationResult, error) {
	var (
		mu        sync.Mutex
		latencies []time.Duration
		stale     int
		firstErr  error
		wg        sync.WaitGroup
	)
	// A few appenders take scheduled slots, so one slow append does not
	// push the whole schedule back; they spread the events over 200
	// streams.
	appended, err := pace(ctx, rate, d, 4, func(ctx context.Context, i int) error {
		res, err := st.Append(ctx, fmt.Sprintf("prop-%d", i%200), events.AnyVersion,
			events.Event{Data: events.Raw{Type: "bench.event", Payload: payload(int64(i))}})
		if err != nil {
			return err
		}
		committed := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			isStale, err := wait(ctx, res.Token)
			lat := time.Since(committed)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			if isStale {
				stale++
			}
			latencies = append(latencies, lat)
		}()
		return nil
	})
	wg.Wait()
	if err == nil {
		err = firstErr
	}
	if err != nil {
		return PropagationResult{}, err
	}
	slices.Sort(latencies)
	return PropagationResult{
		Scenario:       "propagation",
		Rate:           rate,
		AppendedPerSec: appended.perSec(),
		Events:         len(latencies),
		P50Ms:          ms(percentile(latencies, 0.50)),
		P95Ms:          ms(percentile(latencies, 0.95)),
		P99Ms:          ms(percentile(latencies, 0.99)),
		Stale:          stale,
	}, nil
}

// ratio is num/den rounded to three decimals, or to three significant
// figures when that keeps more (a saga's 0.00259 read 0.003, 16% off, and
// a ratio under 0.0005 read 0); 0 when den is 0 (nothing measured), so a
// line never carries Inf, which JSON cannot encode.
func ratio(num, den float64) float64 {
	if den <= 0 {
		return 0
	}
	r := num / den
	dec := 3
	if r != 0 {
		dec = min(max(dec, 2-int(math.Floor(math.Log10(math.Abs(r))))), 15)
	}
	p := math.Pow(10, float64(dec))
	return math.Round(r*p) / p
}

// ratioText prints a ratio in a summary with decimals decimals, or three
// significant figures below 0.1, where those would hide it.
func ratioText(r float64, decimals int) string {
	if r != 0 && math.Abs(r) < 0.1 {
		return strconv.FormatFloat(r, 'g', 3, 64)
	}
	return strconv.FormatFloat(r, 'f', decimals, 64)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()/10) / 100 }
