// Package archtest holds sandpool's architecture tests (import rules and
// package docs); it has no code of its own.
package archtest
