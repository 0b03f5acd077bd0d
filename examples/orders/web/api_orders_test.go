package web_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/examples/orders/web"
	"github.com/converge-es/converge/projections"
)

func TestPlaceOrder_AnswersAcceptedWithTheToken(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	r := b.do(t, http.MethodPost, "/orders", jsonHeader(), strings.NewReader(`{"customer_id":"c-1","sku":"tea","qty":2,"card":"4242-4242-4242-4242"}`))
	require.Equal(t, http.StatusAccepted, r.status, "body %s", r.body)
	body := r.json(t)
	require.Equal(t, "o-001", body["order_id"])
	require.Equal(t, web.StatusPending, body["status"])
	require.Equal(t, r.header.Get(consistency.HeaderPosition), body["position"])
	require.Equal(t, "/orders/o-001?consistency_position="+url.QueryEscape(r.header.Get(consistency.HeaderPosition)), r.header.Get("Location"))
	require.Equal(t, r.header.Get("Location"), body["href"])
	require.Equal(t, "no-store", r.header.Get("Cache-Control"))
}

func TestPlaceOrder_RefusesBadRequestsWithProblems(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *web.Config) { c.MaxBodyBytes = 256 })
	big := `{"customer_id":"c-1","sku":"tea","qty":1,"card":"4242-4242-4242-4242","x":"` + strings.Repeat("a", 300) + `"}`
	cases := []struct {
		name        string
		contentType string
		body        io.Reader
		status      int
		typ         string
		fields      []string
	}{
		{"no content type", "", strings.NewReader(`{"customer_id":"c-1","sku":"tea","qty":1,"card":"4242-4242-4242-4242"}`), 415, web.ProblemUnsupportedMediaType, nil},
		{"form post", "application/x-www-form-urlencoded", strings.NewReader(`customer_id=c-1`), 415, web.ProblemUnsupportedMediaType, nil},
		{"empty body", "application/json", strings.NewReader(``), 400, web.ProblemInvalidBody, nil},
		{"malformed", "application/json", strings.NewReader(`{"customer_id":`), 400, web.ProblemInvalidBody, nil},
		{"wrong type", "application/json", strings.NewReader(`{"customer_id":"c-1","sku":"tea","qty":"12","card":"4242-4242-4242-4242"}`), 400, web.ProblemInvalidBody, nil},
		{"unknown field", "application/json", strings.NewReader(`{"customer_id":"c-1","sku":"tea","qty":1,"card":"4242-4242-4242-4242","admin":true}`), 400, web.ProblemInvalidBody, nil},
		// encoding/json matches field names ignoring case and keeps the
		// last of a key given twice: the API takes neither.
		{"field name in other case", "application/json", strings.NewReader(`{"CUSTOMER_ID":"c-1","sku":"tea","qty":1,"card":"4242-4242-4242-4242"}`), 400, web.ProblemInvalidBody, nil},
		{"field given twice", "application/json", strings.NewReader(`{"customer_id":"c-1","sku":"tea","qty":1,"card":"4242-4242-4242-4242","customer_id":"c-2"}`), 400, web.ProblemInvalidBody, nil},
		{"field twice, other case", "application/json", strings.NewReader(`{"customer_id":"c-1","sku":"tea","qty":1,"card":"4242-4242-4242-4242","Customer_Id":"c-2"}`), 400, web.ProblemInvalidBody, nil},
		{"whitespace only", "application/json", strings.NewReader(" \n\t"), 400, web.ProblemInvalidBody, nil},
		{"trailing data", "application/json", strings.NewReader(`{"customer_id":"c-1","sku":"tea","qty":1,"card":"4242-4242-4242-4242"} {}`), 400, web.ProblemInvalidBody, nil},
		{"too large, declared", "application/json", strings.NewReader(big), 413, web.ProblemBodyTooLarge, nil},
		// No Content-Length: the limit must hold while reading too.
		{"too large, streamed", "application/json; charset=utf-8", io.MultiReader(strings.NewReader(big)), 413, web.ProblemBodyTooLarge, nil},
		{"missing fields", "application/json", strings.NewReader(`{}`), 422, web.ProblemValidation, []string{"customer_id", "sku", "qty", "card"}},
		{"bad values", "application/json", strings.NewReader(`{"customer_id":"c 1/<x>","sku":"t/ea","qty":-5,"card":"4242<b>"}`), 422, web.ProblemValidation, []string{"customer_id", "sku", "qty", "card"}},
		{"qty too big", "application/json", strings.NewReader(`{"customer_id":"c-1","sku":"tea","qty":101,"card":"4242-4242-4242-4242"}`), 422, web.ProblemValidation, []string{"qty"}},
	}
	t.Run("cases", func(t *testing.T) { // returns when every parallel case has
		t.Parallel()
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				h := http.Header{}
				if tc.contentType != "" {
					h.Set("Content-Type", tc.contentType)
				}
				p := b.do(t, http.MethodPost, "/orders", h, tc.body).problem(t, tc.status, tc.typ)
				require.NotEmpty(t, p["detail"])
				var got []string
				if errs, ok := p["errors"].([]any); ok {
					for _, e := range errs {
						got = append(got, as[string](t, as[map[string]any](t, e)["field"]))
					}
				}
				require.Equal(t, tc.fields, got)
			})
		}
	})
	t.Cleanup(func() { require.Empty(t, b.orders.log, "no refused request reached the domain") })
}

func TestPlaceOrder_DomainErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.orders.placeErr = &web.ValidationError{Fields: []web.FieldError{{Field: "customer_id", Message: "is blocked"}}}
	p := b.do(t, http.MethodPost, "/orders", jsonHeader(), strings.NewReader(`{"customer_id":"c-1","sku":"tea","qty":1,"card":"4242-4242-4242-4242"}`)).problem(t, 422, web.ProblemValidation)
	require.Contains(t, p["detail"], "customer_id is blocked")

	b.orders.placeErr = errors.New("database password is hunter2")
	p = b.do(t, http.MethodPost, "/orders", jsonHeader(), strings.NewReader(`{"customer_id":"c-1","sku":"tea","qty":1,"card":"4242-4242-4242-4242"}`)).problem(t, 500, "about:blank")
	require.NotContains(t, p["detail"], "hunter2", "internal errors stay in the log")
}

// TestAbandonedRequestIsNoServerError: a domain call that fails because
// the request's context ended (the client went away, or the server is
// stopping) is answered 503 and logged at Debug, not as a server error
// that alerts would count; any other failure is still logged as one.
func TestAbandonedRequestIsNoServerError(t *testing.T) {
	t.Parallel()
	var logged syncBuffer
	b := setup(t, func(c *web.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	body := `{"customer_id":"c-1","sku":"tea","qty":1,"card":"4242-4242-4242-4242"}`
	b.orders.placeErr = fmt.Errorf("append order: %w", context.Canceled)
	r := b.do(t, http.MethodPost, "/orders", jsonHeader(), strings.NewReader(body))
	r.problem(t, http.StatusServiceUnavailable, "about:blank")
	require.Equal(t, "1", r.header.Get("Retry-After"))
	require.NotContains(t, logged.String(), "level=ERROR")
	require.Contains(t, logged.String(), "level=DEBUG")

	b.orders.placeErr = errors.New("disk full")
	b.do(t, http.MethodPost, "/orders", jsonHeader(), strings.NewReader(body)).problem(t, http.StatusInternalServerError, "about:blank")
	require.Contains(t, logged.String(), "level=ERROR")
}

// TestPlaceOrderRefusedByACatchingUpModelIsRetryable: a strong read model
// that is catching up refuses the append (nothing written): the client is
// told to retry (503, Retry-After), not that the server failed.
func TestPlaceOrderRefusedByACatchingUpModelIsRetryable(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.orders.placeErr = fmt.Errorf("append order: %w (%q)", projections.ErrStrongCatchingUp, "customer_orders")
	r := b.do(t, http.MethodPost, "/orders", jsonHeader(), strings.NewReader(`{"customer_id":"c-1","sku":"tea","qty":1,"card":"4242-4242-4242-4242"}`))
	p := r.problem(t, http.StatusServiceUnavailable, "about:blank")
	require.Equal(t, "1", r.header.Get("Retry-After"))
	require.Contains(t, p["detail"], "nothing was written")
}

func TestGetOrder_WaitsForTheTokenAndNeverPassesStaleAsOK(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, tok := b.place(t, "c-1", 2)

	// The read model has not seen the order: the wait runs out and the
	// answer is a 404 a client will retry, labelled stale.
	r := b.get(t, "/orders/"+id, withToken(tok))
	p := r.problem(t, http.StatusNotFound, web.ProblemNotYetVisible)
	require.Equal(t, "true", r.header.Get(consistency.HeaderStale))
	require.Equal(t, "1", r.header.Get("Retry-After"))
	require.Contains(t, p["detail"], "retry with the same token")

	// The token in the query works the same.
	r = b.get(t, "/orders/"+id+"?consistency_position="+tok.String(), nil)
	r.problem(t, http.StatusNotFound, web.ProblemNotYetVisible)

	b.orders.Apply()
	r = b.get(t, "/orders/"+id, withToken(tok))
	require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
	require.Equal(t, "false", r.header.Get(consistency.HeaderStale))
	require.Equal(t, tok.String(), r.header.Get(consistency.HeaderPosition))
	v := r.json(t)
	require.Equal(t, id, v["order_id"])
	require.Equal(t, web.StatusPending, v["status"])

	// A later write not yet applied: the order is there, but behind the
	// token. 503 with the older state, never a 200.
	tok2 := b.orders.SetStatus(id, web.StatusCancelled, "declined")
	r = b.get(t, "/orders/"+id, withToken(tok2))
	p = r.problem(t, http.StatusServiceUnavailable, web.ProblemStale)
	require.Equal(t, "true", r.header.Get(consistency.HeaderStale))
	require.Equal(t, tok.String(), r.header.Get(consistency.HeaderPosition), "the checkpoint the answer reflects")
	require.Equal(t, web.StatusPending, as[map[string]any](t, p["order"])["status"])

	// Without a token the same read is an ordinary 200 of what there is.
	r = b.get(t, "/orders/"+id, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, web.StatusPending, r.json(t)["status"])

	b.orders.Apply()
	r = b.get(t, "/orders/"+id, withToken(tok2))
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, web.StatusCancelled, r.json(t)["status"])
	require.Equal(t, "declined", r.json(t)["reason"])
}

func TestGetOrder_RowAheadOfTheCheckpointIsFresh(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, tok := b.place(t, "c-1", 2)
	// The row committed, the tracker has not heard of it yet: the row's
	// own position proves it reflects the write.
	b.orders.ApplyRowsOnly()
	r := b.get(t, "/orders/"+id, withToken(tok))
	require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
	require.Equal(t, "false", r.header.Get(consistency.HeaderStale))
	require.Equal(t, tok.String(), r.header.Get(consistency.HeaderPosition))
}

func TestGetOrder_AnswersAsSoonAsTheReadModelCatchesUp(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, tok := b.place(t, "c-1", 2)
	changed := b.tracker.WaitersChanged()
	// The request runs in a goroutine of its own, so it reports back
	// instead of failing the test there.
	type result struct {
		r   response
		err error
	}
	done := make(chan result, 1)
	go func() {
		h := withToken(tok)
		h.Set(consistency.HeaderTimeout, "9000")
		r, err := tryGet(t.Context(), b, "/orders/"+id, h)
		done <- result{r, err}
	}()
	for b.tracker.Waiting(readModel) == 0 {
		select {
		case <-changed:
		case res := <-done:
			require.NoError(t, res.err)
			require.Failf(t, "the read answered before waiting", "status %d, body %s", res.r.status, res.r.body)
		}
		changed = b.tracker.WaitersChanged()
	}
	b.orders.Apply()
	res := <-done
	require.NoError(t, res.err)
	r := res.r
	require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
	require.Equal(t, "false", r.header.Get(consistency.HeaderStale))
}

// tryGet is bundle.get for a goroutine other than the test's: it returns
// the error instead of failing the test.
func tryGet(ctx context.Context, b *bundle, path string, header http.Header) (response, error) {
	return tryDo(ctx, b, http.MethodGet, path, header, "")
}

func TestGetOrder_Problems(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	r := b.get(t, "/orders/nosuch", nil)
	r.problem(t, http.StatusNotFound, web.ProblemNotFound)
	require.Equal(t, "false", r.header.Get(consistency.HeaderStale), "a fresh 404: there is no such order")
	require.Empty(t, r.header.Get("Retry-After"))

	b.get(t, "/orders/nosuch", http.Header{consistency.HeaderPosition: {"garbage"}}).problem(t, 400, consistency.ProblemInvalidToken)
	b.get(t, "/orders/nosuch", http.Header{consistency.HeaderTimeout: {"soon"}}).problem(t, 400, consistency.ProblemInvalidTimeout)
	p := b.get(t, "/orders/"+strings.Repeat("x", 65), nil).problem(t, 400, web.ProblemInvalidParameter)
	require.Equal(t, "id", p["parameter"])
	b.get(t, "/orders/a%20b", nil).problem(t, 400, web.ProblemInvalidParameter)
}

func TestListOrders_PagesAndLabelsStaleness(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	var want []string
	for i := range 5 {
		id, _ := b.place(t, "c-1", 1+i)
		want = append(want, id)
		b.place(t, "c-2", 1) // another customer's, interleaved
	}
	b.orders.Apply()

	var got []string
	path := "/orders?customer=c-1&limit=2"
	for pages := 0; path != ""; pages++ {
		require.Less(t, pages, 4, "paging does not end")
		r := b.get(t, path, nil)
		require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
		var page struct {
			Orders []web.OrderView `json:"orders"`
			Next   string          `json:"next"`
			Stale  bool            `json:"stale"`
		}
		require.NoError(t, jsonUnmarshal(r.body, &page))
		require.False(t, page.Stale)
		for _, o := range page.Orders {
			require.Equal(t, "c-1", o.CustomerID)
			got = append(got, o.OrderID)
		}
		path = ""
		if page.Next != "" {
			require.Len(t, page.Orders, 2)
			link := r.header.Get("Link")
			require.True(t, strings.HasPrefix(link, "</orders?") && strings.HasSuffix(link, `>; rel="next"`), "Link %q", link)
			path = strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)
		} else {
			require.Empty(t, r.header.Get("Link"))
		}
	}
	require.Equal(t, want, got)

	// A token the read model has not reached: still a 200, labelled.
	_, tok := b.place(t, "c-1", 1)
	r := b.get(t, "/orders?customer=c-1", withToken(tok))
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "true", r.header.Get(consistency.HeaderStale))
	require.Equal(t, true, r.json(t)["stale"])

	for _, q := range []string{
		"", "?customer=", "?customer=c-1&limit=0", "?customer=c-1&limit=101", "?customer=c-1&limit=x", "?customer=c-1&after=" + strings.Repeat("z", 300),
		// A parameter given twice: one of them would be dropped silently.
		"?customer=c-1&customer=c-2", "?customer=c-1&limit=2&limit=3", "?customer=c-1&after=a&after=b",
	} {
		b.get(t, "/orders"+q, nil).problem(t, 400, web.ProblemInvalidParameter)
	}
}

func TestCORS_ExposesTheConsistencyHeadersToAllowedOrigins(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *web.Config) { c.AllowedOrigins = []string{"https://shop.example"} })

	pre := b.do(t, http.MethodOptions, "/orders", http.Header{
		"Origin": {"https://shop.example"}, "Access-Control-Request-Method": {"POST"},
		"Access-Control-Request-Headers": {"content-type, x-consistency-position"},
	}, nil)
	require.Equal(t, http.StatusNoContent, pre.status)
	require.Equal(t, "https://shop.example", pre.header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, pre.header.Get("Access-Control-Allow-Methods"), "POST")
	allowed := pre.header.Get("Access-Control-Allow-Headers")
	for _, h := range []string{"Content-Type", consistency.HeaderPosition, consistency.HeaderTimeout} {
		require.Contains(t, allowed, h)
	}

	h := jsonHeader()
	h.Set("Origin", "https://shop.example")
	r := b.do(t, http.MethodPost, "/orders", h, strings.NewReader(`{"customer_id":"c-1","sku":"tea","qty":1,"card":"4242-4242-4242-4242"}`))
	require.Equal(t, http.StatusAccepted, r.status)
	require.Equal(t, "https://shop.example", r.header.Get("Access-Control-Allow-Origin"))
	exposed := r.header.Get("Access-Control-Expose-Headers")
	require.Contains(t, exposed, consistency.HeaderPosition)
	require.Contains(t, exposed, consistency.HeaderStale)
	require.Contains(t, r.header.Values("Vary"), "Origin")

	// Another site: no CORS headers, and its preflight is refused.
	r = b.get(t, "/orders/o-001", http.Header{"Origin": {"https://evil.example"}})
	require.Empty(t, r.header.Get("Access-Control-Allow-Origin"))
	b.do(t, http.MethodOptions, "/orders", http.Header{
		"Origin": {"https://evil.example"}, "Access-Control-Request-Method": {"POST"},
	}, nil).problem(t, http.StatusForbidden, web.ProblemForbiddenOrigin)
}

func TestNew_RefusesIncompleteConfig(t *testing.T) {
	t.Parallel()
	tr, err := consistency.NewTracker(nil)
	require.NoError(t, err)
	o := newFakeOrders(tr)
	for _, tc := range []struct {
		cfg  *web.Config
		want string
	}{
		{nil, "Config.Orders"},
		{&web.Config{Orders: o}, "Config.Tracker"},
		{&web.Config{Orders: o, Tracker: tr}, "Config.ReadModels"},
		{&web.Config{Orders: o, Tracker: tr, ReadModels: []string{""}}, "Config.ReadModels"},
		{&web.Config{Orders: o, Tracker: tr, ReadModels: []string{"x"}, MaxBodyBytes: -1}, "Config.MaxBodyBytes"},
		{&web.Config{Orders: o, Tracker: tr, ReadModels: []string{"x"}, AllowedOrigins: []string{""}}, "Config.AllowedOrigins[0]"},
	} {
		_, err := web.New(tc.cfg)
		require.ErrorContains(t, err, tc.want)
	}
	_ = tr.Stop(context.Background())
}
