// Package agents will hold langchaingo tools bound to a conversation by the
// application. It is built by issue 6; today it holds nothing.
package agents
