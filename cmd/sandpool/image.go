package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sandpool/sandpool/sandbox/image"
)

func imageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Manage the sandbox image"}
	var opts image.Options
	build := &cobra.Command{
		Use:   "build",
		Short: "Build the Python image offline from Debian packages (skipped when up to date)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Log = cmd.ErrOrStderr()
			tag, err := image.Build(cmd.Context(), opts)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tag)
			return nil
		},
	}
	build.Flags().BoolVar(&opts.Force, "force", false, "rebuild even when the image is up to date")
	build.Flags().StringVar(&opts.Mirror, "mirror", "", "Debian mirror (default http://deb.debian.org/debian)")
	build.Flags().StringVar(&opts.WorkDir, "workdir", "", "where to build the root filesystem (default /var/tmp)")
	tag := &cobra.Command{
		Use:   "tag",
		Short: "Print the image tag for the current inputs",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), image.Tag())
		},
	}
	cmd.AddCommand(build, tag)
	return cmd
}
