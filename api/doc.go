// Package api will hold the HTTP data plane that speaks the Azure
// dynamic-sessions wire formats, with auth, limits, files and WebSocket
// streaming. It is built by issues 4 and 6; today it holds nothing.
package api
