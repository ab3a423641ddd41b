package control

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// Bounds on a blob object's attributes (issue #21). They are stored in
// the control plane's state and travel in every status answer, so they
// stay small: a content type, a file name, a few labels.
const (
	MaxAttributes         = 32
	MaxAttributeKeyLength = 64
	MaxAttributeValueLen  = 1024
	MaxAttributesBytes    = 4096 // keys and values together
)

// ContentTypeAttribute is the attribute the gateway answers as the
// Content-Type of an object's bytes.
const ContentTypeAttribute = "content-type"

// ServedAttributes are the attributes the gateway answers as HTTP
// headers of the same name.
var ServedAttributes = []string{ContentTypeAttribute, "content-disposition", "content-encoding", "content-language", "cache-control"}

// ValidateAttributeKey checks one key: 1–MaxAttributeKeyLength of
// [a-z0-9._-] (lower case, so that "Content-Type" and "content-type" are
// one attribute; callers lower-case what users type).
func ValidateAttributeKey(k string) error {
	if k == "" || len(k) > MaxAttributeKeyLength {
		return fmt.Errorf("attribute key of %d bytes (1–%d)", len(k), MaxAttributeKeyLength)
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("attribute key %q has %q at byte %d (allowed: a-z, 0-9, '.', '_', '-')", k, c, i)
		}
	}
	return nil
}

// ValidateAttributeValue checks one value: valid UTF-8 of at most
// MaxAttributeValueLen bytes with no control characters (it may become
// an HTTP header).
func ValidateAttributeValue(k, v string) error {
	if len(v) > MaxAttributeValueLen {
		return fmt.Errorf("attribute %s: value of %d bytes (at most %d)", k, len(v), MaxAttributeValueLen)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("attribute %s: value is not UTF-8", k)
	}
	if i := strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		return fmt.Errorf("attribute %s: control character at byte %d", k, i)
	}
	return nil
}

// ValidateAttributes checks a whole attribute set against the bounds.
func ValidateAttributes(attrs map[string]string) error {
	if len(attrs) > MaxAttributes {
		return fmt.Errorf("%d attributes (at most %d)", len(attrs), MaxAttributes)
	}
	total := 0
	for _, k := range slices.Sorted(maps.Keys(attrs)) { // the first error found is the same every time
		v := attrs[k]
		if err := ValidateAttributeKey(k); err != nil {
			return err
		}
		if err := ValidateAttributeValue(k, v); err != nil {
			return err
		}
		total += len(k) + len(v)
	}
	if total > MaxAttributesBytes {
		return fmt.Errorf("attributes of %d bytes (at most %d)", total, MaxAttributesBytes)
	}
	return nil
}
