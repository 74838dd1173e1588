package sshchat

// client is one chat session: what the broadcaster fans out to.
type client struct {
	name string
	key  identityKey
	out  chan *event // closed by the broadcaster when the client leaves
	// quiet clients (one-shot commands) count against the user's limits
	// but are not announced, greeted, listed or sent private messages.
	quiet bool

	// Set by the broadcaster before it closes out; read by the writer after.
	hangup hangup
	// Owned by the broadcaster.
	overflowed bool
	held       int // events held for it behind public lines on their way to the store
}

// identityKey is the public key that signed a session's authentication, in
// SSH wire format. The room only compares it; the transport parses it.
type identityKey string

// hangup says how a client's session ends when the room lets it go.
type hangup struct {
	notice    string // told to the client last, if set
	closeConn bool   // close the whole SSH connection, not just the session
}
