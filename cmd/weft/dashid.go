package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/weftstore/weft/crypto"
)

// dashIDArgs lets a blob ID that starts with '-' (one in 64: the ID is
// base64url) stand where any argument stands. The flag parser would take
// "-wXk…" for a group of shorthand flags and refuse it, so a script's
// `weft read $ID` would fail one time in 64. When such an ID appears as an
// argument, the arguments are rewritten as command names, then every flag
// with its value, then "--" and the arguments in their order; anything
// else is returned unchanged, and so are arguments the rewrite cannot
// place (an unknown command: cobra's own error then applies).
func dashIDArgs(root *cobra.Command, args []string) []string {
	if !hasDashID(args) {
		return args
	}
	cmd, _, err := root.Find(args)
	if err != nil {
		return args
	}
	flags := pflag.NewFlagSet("", pflag.ContinueOnError)
	flags.AddFlagSet(cmd.Flags())
	flags.AddFlagSet(cmd.InheritedFlags())
	names := strings.Count(cmd.CommandPath(), " ")

	var head, flagArgs, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			positional = append(positional, args[i+1:]...)
			i = len(args)
		case isDashID(a):
			positional = append(positional, a)
		case !strings.HasPrefix(a, "-") || a == "-":
			if len(head) < names {
				head = append(head, a)
			} else {
				positional = append(positional, a)
			}
		default:
			flagArgs = append(flagArgs, a)
			if takesNextArg(flags, a) && i+1 < len(args) {
				i++
				flagArgs = append(flagArgs, args[i])
			}
		}
	}
	out := append(append(head, flagArgs...), "--")
	return append(out, positional...)
}

func hasDashID(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if isDashID(a) {
			return true
		}
	}
	return false
}

func isDashID(a string) bool {
	if !strings.HasPrefix(a, "-") {
		return false
	}
	_, err := crypto.ParseBlobID(a)
	return err == nil
}

// takesNextArg reports whether the flag argument a ("--name", "-n", "-abn")
// leaves its value to the next argument, as pflag reads it.
func takesNextArg(flags *pflag.FlagSet, a string) bool {
	if name, ok := strings.CutPrefix(a, "--"); ok {
		if strings.Contains(name, "=") {
			return false
		}
		f := flags.Lookup(name)
		return f != nil && f.NoOptDefVal == ""
	}
	group := a[1:]
	for i := range len(group) {
		f := flags.ShorthandLookup(group[i : i+1])
		if f == nil {
			return false
		}
		if f.NoOptDefVal == "" {
			// The rest of the group, if any, is this flag's value.
			return i == len(group)-1
		}
	}
	return false
}
