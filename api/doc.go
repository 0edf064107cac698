// Package api is sandpool's HTTP surface: the Azure Container Apps
// dynamic-sessions data plane (its three wire generations: python/execute,
// code/execute and executions, with their file and session routes) under
// /pools/{pool}, sandpool's pool listing, health, readiness and metrics,
// bearer auth (API keys, JWTs), per-principal limits and access logs. It
// turns error codes into HTTP statuses in one table and never lets a host
// path, container id or stack trace reach a caller.
package api
