package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sandpool/sandpool/internal/logging"
	"github.com/sandpool/sandpool/pool"
	mcpsrv "github.com/sandpool/sandpool/tools/mcp"
)

func mcpCmd() *cobra.Command {
	var (
		cfgPath  string
		poolName string
		server   string
		tokenEnv string
		token    string
		logLevel string
		stateDir string
		serverID string
	)
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "Serve the code-interpreter tools over MCP on stdin/stdout (for Claude Desktop)",
		Long: `mcp speaks the Model Context Protocol on stdin and stdout: one
conversation per process, with its own sandbox, released when stdin ends.

By default it runs the pools of the configuration file (or one default
gVisor pool) in this process, with its own state directory (unless the
file sets server.stateDir: the first free one of /var/lib/sandpool/mcp/0
to 15, so that several desktop applications can each run one) and a
server id derived from it, so it never adopts or reaps the sandboxes of
sandpool serve or of another sandpool mcp. With --server it forwards to a remote
sandpool server's /mcp endpoint instead, with the bearer token of --token
or, better (command lines are visible to other users), of the environment
variable named by --token-env (default SANDPOOL_TOKEN).

Only protocol messages go to stdout; logs go to stderr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log, err := logging.New(cmd.ErrOrStderr(), logging.Options{Level: logLevel})
			if err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			if server != "" {
				endpoint := strings.TrimSuffix(server, "/")
				if !strings.HasSuffix(endpoint, "/mcp") {
					endpoint += "/mcp"
				}
				header := map[string]string{}
				tok := token
				if tok == "" {
					tok = os.Getenv(tokenEnv)
				}
				if tok != "" {
					header["Authorization"] = "Bearer " + tok
				}
				return mcpsrv.Bridge(ctx, endpoint, header, cmd.InOrStdin(), cmd.OutOrStdout(), logging.Component(log, "mcp"))
			}
			cfg, err := loadMCPConfig(cfgPath)
			if err != nil {
				return err
			}
			// The file may be serve's: these give this process its own (a
			// state directory of its own needs a server id of its own).
			if stateDir != "" {
				cfg.Server.StateDir, cfg.Server.ServerID = stateDir, ""
			}
			if serverID != "" {
				cfg.Server.ServerID = serverID
			}
			run, err := startPools(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer run.close()
			var p *pool.Pool
			for _, q := range run.mgr.Pools() {
				if (poolName == "" || q.Name() == poolName) && q.Config().ContainerType != pool.CustomContainer {
					p = q
					break
				}
			}
			if p == nil {
				return fmt.Errorf("--pool: no Python pool %q (MCP's tools run Python)", poolName)
			}
			ms, err := mcpServer(run.mgr, p, cfg.Server.MCP, log)
			if err != nil {
				return err
			}
			err = ms.ServeStdio(ctx, cmd.InOrStdin(), cmd.OutOrStdout())
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
			defer cancel()
			return errors.Join(err, ms.Close(cctx))
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (YAML), as for serve; default: one gVisor pool")
	cmd.Flags().StringVar(&poolName, "pool", "", "pool to serve (default: the first)")
	cmd.Flags().StringVar(&server, "server", "", "remote sandpool server URL (e.g. https://sandpool.example:8080): forward to its /mcp")
	cmd.Flags().StringVar(&token, "token", "", "bearer token for --server (prefer --token-env)")
	cmd.Flags().StringVar(&tokenEnv, "token-env", "SANDPOOL_TOKEN", "environment variable holding the bearer token for --server")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "log level (logs go to stderr)")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "state directory, replacing the file's server.stateDir (default: the first free of /var/lib/sandpool/mcp/0..15)")
	cmd.Flags().StringVar(&serverID, "server-id", "", "server id put on this process's sandboxes, replacing the file's server.serverId (default: derived from the state directory)")
	return cmd
}
