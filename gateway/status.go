package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weftstore/weft/client"
)

// storeErrorStatus maps a failed store to an HTTP status.
func storeErrorStatus(body *countingReader, err error) int {
	var tooBig *http.MaxBytesError
	var quorum *client.QuorumError
	var netErr net.Error
	switch {
	case errors.As(body.err, &tooBig), errors.Is(err, client.ErrBlobTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.As(body.err, &netErr) && netErr.Timeout():
		// Not all of it within --read-timeout.
		return http.StatusRequestTimeout
	case body.err != nil:
		// Cut short (fewer bytes than Content-Length, or no last chunk),
		// or the connection broke: nothing was registered.
		return http.StatusBadRequest
	case errors.Is(err, client.ErrInvalidBlob), errors.Is(err, client.ErrExpired), errors.Is(err, client.ErrDeleted):
		// The registry changed under the store (the content was found
		// invalid, expired or was deleted meanwhile).
		return http.StatusConflict
	case errors.As(err, &quorum):
		return http.StatusServiceUnavailable
	case callerRefused(err) != 0:
		// (Nodes' answers are inside a QuorumError, matched above.)
		return callerRefused(err)
	case hasCode(err, codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.FailedPrecondition),
		errors.Is(err, context.DeadlineExceeded):
		// Unreachable control plane or nodes, or an epoch change that
		// outran the store's rounds: trying again later can succeed.
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}

// callerRefused maps the control plane's refusals of the caller's client
// token, for stores and extensions alike: the token is no client's (403),
// or its quota (bytes × epochs) is used up (507). 0: neither.
func callerRefused(err error) int {
	switch {
	case hasCode(err, codes.Unauthenticated, codes.PermissionDenied):
		return http.StatusForbidden
	case hasCode(err, codes.ResourceExhausted):
		return http.StatusInsufficientStorage
	}
	return 0
}

// writeReadError answers a failed read or status lookup.
func writeReadError(w http.ResponseWriter, r *http.Request, err error) {
	code := readErrorStatus(r, err)
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeError(w, r, code, err)
}

// readErrorStatus maps a failed read to an HTTP status: 499 if the caller
// went away first (its context is what failed the read).
func readErrorStatus(r *http.Request, err error) int {
	if r.Context().Err() != nil {
		return statusClientClosed
	}
	return errorStatus(err)
}

// errorStatus maps the SDK's error to an HTTP status.
func errorStatus(err error) int {
	switch {
	case errors.Is(err, client.ErrNotFound), errors.Is(err, client.ErrNoQuiltFile), errors.Is(err, client.ErrInvalidQuilt),
		errors.Is(err, client.ErrObjectNotFound):
		// An object that was never made, was deleted or has ended; or
		// (an extension) the caller owns none of the blob.
		return http.StatusNotFound
	case errors.Is(err, client.ErrNotOwner):
		// Another client's object: only its owner deletes or edits it.
		return http.StatusForbidden
	case errors.Is(err, client.ErrPermanent):
		// A permanent object lives to its end epoch: the object's state,
		// not the request, is what conflicts.
		return http.StatusConflict
	case errors.Is(err, client.ErrInvalidBlob), errors.Is(err, client.ErrExpired), errors.Is(err, client.ErrDeleted),
		errors.Is(err, client.ErrInconsistentBlob):
		// None of these will ever read: an inconsistently encoded blob
		// is on its way to being marked invalid, a deleted one (its last
		// object deleted) was dropped by the nodes, and every reader gets
		// the same error whichever slivers it fetched.
		return http.StatusGone
	case errors.Is(err, client.ErrRangeOutsideBlob):
		return http.StatusRequestedRangeNotSatisfiable
	case errors.Is(err, client.ErrNotCertified):
		// Registered, but no availability certificate yet (a store in
		// progress, or abandoned): there is nothing to read until there
		// is one. 409, as the resource's state is what conflicts; 425
		// Too Early is about TLS early data.
		return http.StatusConflict
	case errors.Is(err, client.ErrBlobTooLarge):
		// The blob exists, but this gateway would have to hold more
		// than --max-blob-size in memory to check it.
		return http.StatusInsufficientStorage
	case errors.Is(err, client.ErrNotEnoughSlivers), errors.Is(err, client.ErrUnderChallenge),
		hasCode(err, codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted),
		errors.Is(err, context.DeadlineExceeded):
		// Too few nodes (or no control-plane voter) answered, or a
		// storage-challenge round keeps the blob from being served.
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}

// hasCode reports whether any error in err's tree is a gRPC status with
// one of the codes. status.Code looks at the first one errors.As finds,
// but the SDK joins the errors of several nodes, and the answer should
// not depend on which node came first.
func hasCode(err error, cs ...codes.Code) bool {
	if err == nil {
		return false
	}
	if s, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		for _, c := range cs {
			if s.GRPCStatus().Code() == c {
				return true
			}
		}
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return hasCode(u.Unwrap(), cs...)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if hasCode(e, cs...) {
				return true
			}
		}
	}
	return false
}
