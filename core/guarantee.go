package core

import "strconv"

// Guarantee is what the library promises about one message.
//
//	None      arrives 0 or 1 times, in any order (like UDP, never duplicated)
//	Order     arrives 0 or 1 times, never after a newer Order/Delivery message
//	Delivery  arrives exactly once, in order with the other Order/Delivery messages
//
// The constants start at 1 so that a zero value in a Config means "the
// default" (Delivery), never silently "unreliable".
type Guarantee uint8

// The guarantees, weakest first.
const (
	None Guarantee = iota + 1
	Order
	Delivery
)

// String returns the guarantee's name.
func (g Guarantee) String() string {
	switch g {
	case None:
		return "None"
	case Order:
		return "Order"
	case Delivery:
		return "Delivery"
	}
	return "Guarantee(" + strconv.Itoa(int(g)) + ")"
}

// Valid reports whether g is one of None, Order, Delivery.
func (g Guarantee) Valid() bool { return g >= None && g <= Delivery }
