package main

import (
	"fmt"

	"github.com/converge-es/converge/examples/orders/web"
)

// originForm is what every --allow-origin error says a value looks like.
const originForm = `an origin as a browser sends it in the Origin header: scheme://host[:port], ` +
	`such as https://shop.example or http://localhost:8080 (http or https, in lower case, ` +
	`without path, trailing slash, query, user or default port), or "*" for any origin`

// checkOrigins refuses an --allow-origin value the order API would refuse
// (web.OriginFault: it compares each with the request's Origin header as
// an exact string, so any other form never matches), before serve binds,
// opens or migrates anything.
func checkOrigins(origins []string) error {
	for _, o := range origins {
		why, fix := web.OriginFault(o)
		if why == "" {
			continue
		}
		if fix != "" && fix != o {
			why += fmt.Sprintf(" (did you mean %s?)", fix)
		}
		return fmt.Errorf("--allow-origin %q: %s; use %s", o, why, originForm)
	}
	return nil
}
