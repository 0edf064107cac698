// Package tools will hold the code-interpreter tool semantics shared by the
// MCP server and the agent integrations (names, schemas, result rendering).
// It is built by issue 5; today it holds nothing.
package tools
