// Package faultproxy is a TCP proxy for tests that injects network faults
// at chosen moments: it forwards connections to a server (PostgreSQL) and,
// on command, drops a request before the server sees it, or lets the
// server answer and cuts the connection before the answer reaches the
// client. The second is the fault that makes a commit's outcome unknown:
// the server committed, the client cannot tell.
//
// Faults fire on the first client message that matches, so a test aims at
// one statement by its parameters (a unique stream id, say). The client
// must not use TLS, or nothing can be matched. With pgx, cfg being the
// client's *pgx.ConnConfig (TestCutAfterPostgreSQLAnswered runs this):
//
//	p := faultproxy.New(t, server) // PostgreSQL's host:port
//	fired := p.Inject(faultproxy.Fault{Match: faultproxy.Contains("order-42")})
//	// Connect through p, without TLS, and run the statement:
//	cfg.Host, cfg.Port, cfg.TLSConfig, cfg.Fallbacks = p.Host(), p.Port(), nil, nil
//	conn, err := pgx.ConnectConfig(ctx, cfg)
//	require.NoError(t, err)
//	_, err = conn.Exec(ctx, "SELECT $1::text", "order-42")
//	<-fired // the server answered; the client got a cut connection
//	require.Error(t, err)
package faultproxy
