package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
)

// cli is one invocation: the options every command fills and the exit code
// of the command that ran.
type cli struct {
	opts   *Options
	stdout io.Writer
	stderr io.Writer
	// logger is built once the flags are known; client-go logs through it.
	logger *slog.Logger
	code   int
}

// newRootCommand builds the command tree. Cobra is used for what it does
// well and pflag alone does not: per-command help and usage, `help
// [command]`, shell completion and command suggestions. Errors are never
// printed by cobra: run prints each one once.
func (c *cli) newRootCommand() *cobra.Command {
	o := c.opts
	root := &cobra.Command{
		Use:           "calico-cni-sync [flags]",
		Short:         "Keep Calico's CNI config and kubeconfig on this node current",
		Long:          rootLong,
		Example:       rootExample,
		Args:          noArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		Annotations:   map[string]string{annExitCodes: rootExitCodes, annEnv: nodeEnv},
		RunE: c.runE("", func(ctx context.Context) (int, error) {
			if o.Once {
				return runOnce(ctx, o, c.stdout, c.stderr)
			}
			return runAgent(ctx, o, c.logger), nil
		}),
	}

	drift := &cobra.Command{
		Use:         "drift [flags]",
		Short:       "Show this node's files against what install-cni would write; writes nothing",
		Long:        driftLong,
		Example:     driftExample,
		Args:        noArgs,
		Annotations: map[string]string{annExitCodes: driftExitCodes, annEnv: nodeEnv},
		RunE:        c.runE("drift", func(ctx context.Context) (int, error) { return runDrift(ctx, o, c.stdout) }),
	}

	render := &cobra.Command{
		Use:         "render [flags]",
		Short:       "Print the files install-cni would write now, tokens redacted",
		Long:        renderLong,
		Example:     renderExample,
		Args:        noArgs,
		Annotations: map[string]string{annExitCodes: renderExitCodes, annEnv: nodeEnv},
		RunE:        c.runE("render", func(ctx context.Context) (int, error) { return runRender(ctx, o, c.stdout) }),
	}
	drift.Flags().BoolVar(&o.Suggest, "suggest", false, "for each Drifted file, print where the lasting change must be made, as a command to paste")
	render.Flags().BoolVar(&o.ShowToken, "show-token", false, "print the token itself instead of its hash")

	report := &cobra.Command{
		Use:         "report [flags]",
		Short:       "Show every node's state, from the Node conditions",
		Long:        reportLong,
		Example:     reportExample,
		Args:        noArgs,
		Annotations: map[string]string{annExitCodes: reportExitCodes, annEnv: "  KUBECONFIG  the tool's own kubeconfig, as for kubectl\n"},
		RunE:        c.runE("report", func(ctx context.Context) (int, error) { return runReport(ctx, o, c.stdout, c.stderr) }),
	}

	report.Flags().BoolVar(&o.Stuck, "stuck", false, "list the pods a stale or rejected CNI token left stuck, with the fix for each")
	report.Flags().BoolVar(&o.Fix, "fix", false, "with --stuck: delete the stuck pods a controller owns (it recreates them); asks first unless --yes")
	report.Flags().BoolVar(&o.Yes, "yes", false, "with --stuck --fix: delete without asking")
	report.Flags().BoolVar(&o.RolloutReport, "rollout", false, "show the staged rollout of ConfigMap changes: per revision, how many nodes applied it, wait, are paused, halted or rolled back, and why")

	plan := &cobra.Command{
		Use:         "plan -f FILE [flags]",
		Short:       "Show what applying a ConfigMap would change in every node's CNI files; writes nothing",
		Long:        planLong,
		Example:     planExample,
		Args:        noArgs,
		Annotations: map[string]string{annExitCodes: planExitCodes, annEnv: "  KUBECONFIG  the tool's own kubeconfig, as for kubectl\n"},
		RunE:        c.runE("plan", func(ctx context.Context) (int, error) { return runPlan(ctx, o, c.stdout, c.stderr) }),
	}
	plan.Flags().StringVarP(&o.PlanFile, "filename", "f", "", "the ConfigMap manifest to plan, as kubectl apply -f takes it (- reads stdin)")

	cleanup := &cobra.Command{
		Use:         "cleanup (--node-name NODE | --all) [flags]",
		Short:       "After an uninstall, remove the agent's Lease and Node condition; leaves the CNI files",
		Long:        cleanupLong,
		Example:     cleanupExample,
		Args:        noArgs,
		Annotations: map[string]string{annExitCodes: cleanupExitCodes, annEnv: "  KUBECONFIG  the tool's own kubeconfig, as for kubectl\n"},
		RunE:        c.runE("cleanup", func(ctx context.Context) (int, error) { return runCleanup(ctx, o, c.stdout, c.stderr) }),
	}
	o.addCleanupFlags(cleanup.Flags())

	versionCmd := &cobra.Command{
		Use:         "version",
		Short:       "Print the version and the VCS revision of this binary",
		Long:        "version prints the version and the VCS revision the binary was built from, \"unknown\" for what the build did not record.",
		Args:        noArgs,
		Annotations: map[string]string{annExitCodes: "  0  always\n"},
		Run: func(*cobra.Command, []string) {
			_, _ = fmt.Fprintln(c.stdout, versionLine(version, readBuildInfo()))
		},
	}

	// Every mode takes the common flags as its own (not cobra's persistent
	// flags, which version and completion would accept too), but for those
	// only one of them takes.
	for _, cmd := range []*cobra.Command{root, drift, render, report, plan} {
		name := ""
		if cmd != root {
			name = cmd.Name()
		}
		o.addFlagsFor(name, cmd.Flags())
		completeValues(cmd)
	}
	root.AddCommand(drift, report, render, plan, cleanup, versionCmd)
	root.SetHelpCommand(helpCommand())
	root.SetUsageTemplate(withExtras(root.UsageTemplate()))
	root.SuggestionsMinimumDistance = 2
	root.SetFlagErrorFunc(flagError)
	return root
}

// runE wires a command: complete and validate the options, then run. Flag
// problems are usage errors (printed with a hint to --help); what the
// command returns is its exit code.
func (c *cli) runE(name string, f func(ctx context.Context) (int, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		c.opts.Command = name
		if err := c.opts.Complete(cmd.Flags()); err != nil {
			return err
		}
		if err := c.opts.Validate(); err != nil {
			return usageError{err}
		}
		c.logger = newLogger(c.stderr, c.opts)
		code, err := f(cmd.Context())
		c.code = code
		return err
	}
}

// helpCommand replaces cobra's, which answers an unknown topic with the
// root's usage and exit 0; an unknown command is a usage error like any.
func helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var names []cobra.Completion
			if len(args) == 0 {
				for _, c := range cmd.Root().Commands() {
					if c.IsAvailableCommand() {
						names = append(names, c.Name())
					}
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return usageError{fmt.Errorf("unknown command %q for help", strings.Join(args, " "))}
			}
			return target.Help()
		},
	}
}

// completeValues offers the fixed values of enumerated flags to the shell.
func completeValues(cmd *cobra.Command) {
	for flag, values := range map[string][]string{
		"output":       {"text", "json"},
		"log-format":   {"text", "json"},
		"token-source": {"secret", "tokenrequest", "file"},
		"on-drift":     {"report", "enforce"},
	} {
		if cmd.Flags().Lookup(flag) != nil {
			_ = cmd.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
		}
	}
}
