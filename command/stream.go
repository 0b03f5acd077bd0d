package command

// StreamPrefix starts every command stream: commands are events of their
// own streams, so converge's feed is the outbox (the command commits with
// the step that sent it) and the transport (handlers read the command's
// category).
const StreamPrefix = "cmd."

// Metadata keys of commands, beside correlation_id (the sender's
// correlation, a saga's instance id) and causation_id (the message that
// caused the command).
const (
	// MetaCausalToken is the consistency token the sender had seen when it
	// sent the command (events.Token.String): a handler that reads read
	// models waits for them to reach it.
	MetaCausalToken = "converge_causal_token"
	// MetaSender names what sent the command (a saga type).
	MetaSender = "converge_sender"
)

// Category returns the stream category of commands of the stored type
// name: a command handler subscribes to it.
func Category(commandType string) string { return StreamPrefix + commandType }

// StreamFor returns the stream a command of the stored type name is
// appended to for a correlation (the sender's instance id): one stream per
// type and correlation, in the type's category.
func StreamFor(commandType, correlation string) string {
	if correlation == "" {
		return Category(commandType)
	}
	return Category(commandType) + "-" + correlation
}
