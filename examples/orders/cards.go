package orders

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// A card number is the one thing a shop must not keep: events are
// permanent, and saga states, command payloads and saga histories are read
// back by dashboards and operators. So the number stops at Place, which
// hands it to the payment provider's tokenization (Tokenize) and keeps only
// what comes back: a token the provider charges, and the last four digits
// for receipts. OrderPlaced, the fulfilment's state and ChargePayment carry
// those two, never the number.

// Tokens the simulated provider gives its test cards: the Payment handler
// decides by them, as a real provider decides by the card behind a token.
const (
	// TokenDeclined stands for CardDeclined: the charge is refused.
	TokenDeclined = "tok_test_declined"
	// TokenNoAnswer stands for CardNoAnswer: the charge is never answered.
	TokenNoAnswer = "tok_test_no_answer"
)

// Limits of a card number, in digits once its separators are removed
// (ISO/IEC 7812 numbers are 12 to 19 digits long).
const (
	MinCardDigits = 12
	MaxCardDigits = 19
)

// CardRef is what the shop keeps of a card: the provider's token for it
// and its last four digits.
type CardRef struct {
	Token string `json:"token"`
	Last4 string `json:"last4"`
}

// cardTokenNamespace derives the tokens of cards that are not test cards
// from their order ids.
var cardTokenNamespace = uuid.MustParse("0b7f3c1e-9d44-4c55-8a61-3f2e7d9c4b10")

// Tokenize stands in for a payment provider's tokenization, which in a
// real shop the customer's browser calls directly (Stripe.js, Adyen's web
// components): the provider keeps the number and answers a token, which
// is all the shop ever charges. This simulated provider charges every card
// but its test cards, so it needs to keep nothing: a test card gets its
// fixed token (TokenDeclined, TokenNoAnswer), any other card a token
// derived from the order id, so placing an order again tokenizes to the
// same event (see PlaceOrder.OrderID).
//
// card may separate its digits with spaces or '-' ("4242 4242 4242 4242"):
// a test card is recognised however it is written. A card that is not 12
// to 19 digits is refused with an error that says what to send.
func Tokenize(orderID, card string) (CardRef, error) {
	digits, err := NormalizeCard(card)
	if err != nil {
		return CardRef{}, err
	}
	return tokenOf(orderID, digits), nil
}

// NormalizeCard returns card's digits without its separators (spaces and
// '-'), or an error when it is not a card number of 12 to 19 digits.
func NormalizeCard(card string) (string, error) {
	digits := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, card)
	switch {
	case strings.TrimSpace(card) == "":
		return "", errors.New("card is required")
	case strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }) >= 0:
		return "", errors.New("card: send the card number's digits, separated by spaces or '-' if you like")
	case len(digits) < MinCardDigits || len(digits) > MaxCardDigits:
		return "", fmt.Errorf("card has %d digits: a card number has %d to %d", len(digits), MinCardDigits, MaxCardDigits)
	}
	return digits, nil
}

// tokenOf is the simulated provider's token for the card digits of order
// orderID.
func tokenOf(orderID, digits string) CardRef {
	ref := CardRef{Token: "tok_" + uuid.NewSHA1(cardTokenNamespace, []byte(orderID)).String()}
	switch digits {
	case testDigits(CardDeclined):
		ref.Token = TokenDeclined
	case testDigits(CardNoAnswer):
		ref.Token = TokenNoAnswer
	}
	if len(digits) >= 4 {
		ref.Last4 = digits[len(digits)-4:]
	}
	return ref
}

func testDigits(card string) string { return strings.ReplaceAll(card, "-", "") }

// upcastCardNumber brings a payload of schema v1, which held the card
// number under "card", to v2, which holds the provider's token under
// "card_token" (and, withLast4, the last four digits under "card_last4"):
// OrderPlaced events, ChargePayment commands and fulfilment states stored
// before tokenization read as if the number had been tokenized, and a
// charge still on its way is decided by the token like any other. The v1
// payloads as stored still hold the numbers: drop a database that has them
// (or rewrite its events) rather than keep it.
func upcastCardNumber(withLast4 bool) func(json.RawMessage) (json.RawMessage, error) {
	return func(payload json.RawMessage) (json.RawMessage, error) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(payload, &m); err != nil {
			return nil, err
		}
		var v1 struct {
			OrderID string `json:"order_id"`
			Card    string `json:"card"`
		}
		if err := json.Unmarshal(payload, &v1); err != nil {
			return nil, err
		}
		delete(m, "card")
		// The v1 domain took any card that was not blank: what is not a
		// number here keeps no digits, and is charged as it was then.
		digits, err := NormalizeCard(v1.Card)
		if err != nil {
			digits = ""
		}
		ref := tokenOf(v1.OrderID, digits)
		set := func(k, v string) error {
			b, err := json.Marshal(v)
			m[k] = b
			return err
		}
		if err := set("card_token", ref.Token); err != nil {
			return nil, err
		}
		if withLast4 {
			if err := set("card_last4", ref.Last4); err != nil {
				return nil, err
			}
		}
		return json.Marshal(m)
	}
}
