// Package web holds what every HTTPS surface of keybound shares: the
// hardened http.Server (timeouts, header and body limits), request ids,
// panic recovery, the access log, and error-returning handlers whose errors
// are rendered in one place.
//
// It decides nothing about authorization; it only makes every listener
// bounded, observable and fail-safe.
package web

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Timeouts of every listener. They bound slow-loris clients; the body limit
// bounds large ones.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 60 * time.Second
	IdleTimeout       = 120 * time.Second
)

// Log attribute keys, constant so every line is queryable the same way.
const (
	AttrRequestID = "request_id"
	AttrMethod    = "method"
	AttrPath      = "path"
	AttrStatus    = "status"
	AttrDuration  = "duration_ms"
	AttrRemote    = "remote"
	AttrError     = "error"
	AttrAborted   = "aborted"
)

// NewServer returns an http.Server with keybound's limits applied.
func NewServer(h http.Handler, tlsConf *tls.Config, maxHeaderBytes int, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

type ctxKey int

const requestIDKey ctxKey = 0

// RequestID returns the id Middleware gave the request, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// StatusWriter records the final status and the body bytes of a response:
// for the access log here, and for the gateway's audit events.
type StatusWriter struct {
	http.ResponseWriter
	// Status is the final status written (0 before any); Bytes counts the
	// body bytes written.
	Status int
	Bytes  int64
}

// WriteHeader records the first final status: informational responses
// passed on first (a reverse proxy passes the upstream's 103 Early Hints)
// are not what the request got; 101, which ends the HTTP exchange, is.
func (w *StatusWriter) WriteHeader(code int) {
	if w.Status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Hijack hands the connection over for a protocol switch. A reverse proxy
// hijacks only after the upstream answered 101, and writes that 101 on the
// raw connection, not through WriteHeader, so it is recorded here. Bytes
// on the switched connection are not counted.
func (w *StatusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.Status == 0 {
		w.Status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.Bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack (streaming,
// WebSocket upgrades).
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Middleware wraps next with a request id (X-Request-Id, generated, never
// taken from the caller, so logs cannot be forged), a body-size limit, panic
// recovery and one access log line per request.
func Middleware(next http.Handler, maxBody int64, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := newID()
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		sw := &StatusWriter{ResponseWriter: w}
		defer func() {
			p := recover()
			aborted := p == http.ErrAbortHandler
			if p != nil && !aborted {
				log.Error("panic in handler", AttrRequestID, id, AttrPath, r.URL.Path, AttrError, p)
				if sw.Status == 0 {
					http.Error(sw, `{"error":"server_error","error_description":"internal error; the request id is in X-Request-Id"}`, http.StatusInternalServerError)
				}
			}
			attrs := []slog.Attr{
				slog.String(AttrRequestID, id),
				slog.String(AttrMethod, r.Method),
				slog.String(AttrPath, r.URL.Path),
				slog.Int(AttrStatus, sw.Status),
				slog.Float64(AttrDuration, float64(time.Since(start).Microseconds())/1000),
				slog.String(AttrRemote, r.RemoteAddr),
			}
			if aborted {
				// The response was cut off (the client went away, a proxied
				// body broke): still one line, marked so.
				attrs = append(attrs, slog.Bool(AttrAborted, true))
			}
			log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
			if aborted {
				panic(p) // net/http drops the connection without logging
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// IsBodyTooLarge reports whether err came from the body-size limit.
func IsBodyTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// Listen opens a TCP listener on addr.
func Listen(addr string) (net.Listener, error) {
	return net.Listen("tcp", addr)
}
