package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// runNetns re-runs the scenarios inside a fresh network namespace where the
// kernel impairs loopback: iptables -m statistic drops packets at random on
// lo's input (so TCP and UDP lose exactly alike), tc netem adds delay,
// jitter, duplication and reordering, tc tbf makes the bottleneck. With loss it
// runs twice, once lossless and once lossy, in the same namespace, so the
// lossy numbers have their own baseline. The namespace is deleted on return,
// including after SIGINT/SIGTERM.
func runNetns(ctx context.Context, o *options, _ []string, stdout, stderr io.Writer) error {
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "netns: "+format+"\n", args...) }
	if os.Geteuid() != 0 {
		return errors.New("-netns needs root (it creates a network namespace and changes its firewall and qdisc); run it as root or with sudo, or drop -netns to use the userspace proxy")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return errors.New("-netns needs the ip command (iproute2), which is not installed: apt-get install iproute2")
	}
	needTC := o.Rate > 0 || o.Delay > 0 || o.Jitter > 0 || o.Dup > 0 || o.Reorder > 0
	if needTC {
		if _, err := exec.LookPath("tc"); err != nil {
			return errors.New("-netns with -rate/-delay/-jitter/-dup/-reorder needs the tc command (iproute2), which is not installed")
		}
	}
	if o.Loss > 0 {
		if _, err := exec.LookPath("iptables"); err != nil {
			logf("iptables is not installed; installing it with apt-get (Debian/Ubuntu) ...")
			if err := aptInstall(ctx, stderr, "iptables"); err != nil {
				return fmt.Errorf("-netns -loss needs iptables, which is not installed and apt-get failed: %w; install it and retry", err)
			}
			if _, err := exec.LookPath("iptables"); err != nil {
				return errors.New("-netns -loss needs iptables: apt-get ran but no iptables command is on PATH")
			}
			logf("iptables installed")
		}
	}
	exe, err := os.Executable()
	if err != nil {
		exe = "/proc/self/exe"
	}

	name := fmt.Sprintf("rudpbench-%d", os.Getpid())
	sh := func(args ...string) error {
		var out bytes.Buffer
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if o.verbose {
			logf("$ %s", strings.Join(args, " "))
		}
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
		}
		return nil
	}
	inNS := func(args ...string) error { return sh(append([]string{ip, "netns", "exec", name}, args...)...) }

	if err := sh(ip, "netns", "add", name); err != nil {
		return fmt.Errorf("cannot create a network namespace (a container without CAP_SYS_ADMIN?): %w", err)
	}
	logf("created network namespace %s", name)
	defer func() {
		// Not the run's context: cleanup must happen after a signal too.
		if err := sh(ip, "netns", "delete", name); err != nil {
			logf("could not delete namespace %s: %v (delete it with: ip netns delete %s)", name, err, name)
		} else {
			logf("deleted network namespace %s", name)
		}
	}()
	up := []string{ip, "link", "set", "lo", "up"}
	var shaping []string
	if o.LoMTU != 0 {
		up = append(up, "mtu", strconv.Itoa(o.LoMTU))
		shaping = append(shaping, fmt.Sprintf("lo MTU %d", o.LoMTU))
	}
	if err := inNS(up...); err != nil {
		return err
	}
	if needTC {
		netem := []string{}
		if o.Delay > 0 || o.Jitter > 0 {
			// Every packet crosses lo once, so the qdisc's delay is the one-way delay.
			netem = append(netem, "delay", tcTime(o.Delay), tcTime(o.Jitter))
		}
		if o.Dup > 0 {
			netem = append(netem, "duplicate", tcPercent(o.Dup))
		}
		if o.Reorder > 0 {
			if o.Delay == 0 {
				return errors.New("-netns -reorder needs -delay too (netem reorders by sending some packets without the delay)")
			}
			netem = append(netem, "reorder", tcPercent(o.Reorder))
		}
		tbf := []string{}
		if o.Rate > 0 {
			queue := o.Queue
			if queue == 0 {
				queue = 64 << 10
			}
			burst := max(o.Rate/250, 16<<10) // at least 4 ms worth at the rate, and 16 KiB for lo's large packets
			tbf = []string{"tbf", "rate", strconv.FormatInt(o.Rate*8, 10) + "bit", "burst", strconv.FormatInt(burst, 10), "limit", strconv.Itoa(queue)}
		}
		switch {
		case len(netem) > 0 && len(tbf) > 0:
			if err := inNS(append([]string{"tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "netem"}, netem...)...); err != nil {
				return fmt.Errorf("tc netem (needs the sch_netem kernel module): %w", err)
			}
			if err := inNS(append([]string{"tc", "qdisc", "add", "dev", "lo", "parent", "1:1", "handle", "10:"}, tbf...)...); err != nil {
				return fmt.Errorf("tc tbf: %w", err)
			}
		case len(netem) > 0:
			if err := inNS(append([]string{"tc", "qdisc", "add", "dev", "lo", "root", "netem"}, netem...)...); err != nil {
				return fmt.Errorf("tc netem (needs the sch_netem kernel module): %w", err)
			}
		default:
			if err := inNS(append([]string{"tc", "qdisc", "add", "dev", "lo", "root"}, tbf...)...); err != nil {
				return fmt.Errorf("tc tbf (needs the sch_tbf kernel module): %w", err)
			}
		}
		shaping = append(shaping, "tc "+strings.Join(append(netem, tbf...), " "))
		logf("lo shaped: %s", shaping[len(shaping)-1])
	}
	shapeDesc := ""
	if len(shaping) > 0 {
		shapeDesc = ", " + strings.Join(shaping, "; ")
	}

	type pass struct {
		phase string
		loss  bool
	}
	passes := []pass{{"netns lossless", false}}
	if o.Loss > 0 {
		passes = append(passes, pass{fmt.Sprintf("netns loss %g%%", 100*o.Loss), true})
	}
	final := newReport(o)
	final.Env.Impair = fmt.Sprintf("kernel, namespace %s: no loss%s", name, shapeDesc)
	if o.Loss > 0 {
		final.Env.Impair = fmt.Sprintf("kernel, namespace %s: iptables -m statistic random DROP on lo INPUT with p=%g (every packet, both directions, TCP and UDP alike)%s", name, o.Loss, shapeDesc)
	}
	for _, ps := range passes {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		env := ps.phase + shapeDesc
		if ps.loss {
			rule := []string{"iptables", "-A", "INPUT", "-i", "lo", "-m", "statistic", "--mode", "random", "--probability", strconv.FormatFloat(o.Loss, 'f', -1, 64), "-j", "DROP"}
			if err := inNS(rule...); err != nil {
				return fmt.Errorf("cannot add the loss rule (iptables statistic match / nf_tables support missing in this kernel?): %w", err)
			}
			logf("added: %s", strings.Join(rule, " "))
		}
		logf("pass %q: running the scenarios inside the namespace", ps.phase)
		args := childArgs(o, env)
		cmd := exec.CommandContext(ctx, ip, append([]string{"netns", "exec", name, exe}, args...)...)
		cmd.WaitDelay = 5 * time.Second
		var out bytes.Buffer
		cmd.Stdout = &out
		cmd.Stderr = stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("the run inside the namespace failed: %w", err)
		}
		var rep report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			return fmt.Errorf("cannot parse the JSON of the run inside the namespace: %w", err)
		}
		for _, r := range rep.Results {
			if r.Phase == "" {
				r.Phase = ps.phase
			} else {
				r.Phase = ps.phase + ", " + r.Phase
			}
			final.Results = append(final.Results, r)
		}
		for _, n := range rep.Env.Notes {
			if strings.HasPrefix(n, "the machine was busy") {
				continue // the parent's own check covers the whole run
			}
			final.note("%s", n)
		}
	}
	if o.Loss > 0 {
		final.note("in the namespace every packet on lo is dropped with probability %g by the kernel, before TCP or UDP see it: TCP, raw UDP and rudp lose alike", o.Loss)
	}
	final.finish()
	final.evaluateTargets()
	if o.json {
		return final.writeJSON(stdout)
	}
	final.writeTables(stdout)
	return nil
}

// childArgs are the flags of the run inside the namespace: the measurement
// flags without any userspace impairment (the kernel impairs instead).
func childArgs(o *options, env string) []string {
	args := []string{
		"-json",
		"-env", env,
		"-size", strconv.Itoa(o.SizeMiB),
		"-duration", o.Duration.String(),
		"-idle", o.Idle.String(),
		"-conns", strconv.Itoa(o.Conns),
		"-dialconns", strconv.Itoa(o.DialConns),
		"-rounds", strconv.Itoa(o.Rounds),
		"-msgrate", strconv.Itoa(o.MsgRate),
		"-seed", strconv.FormatUint(o.Seed, 10),
		"-transports", strings.Join(o.Transports, ","),
		// Applied by netem in the namespace; passed so timeouts allow for them.
		"-delay", o.Delay.String(),
		"-jitter", o.Jitter.String(),
	}
	if o.verbose {
		args = append(args, "-v")
	}
	if o.NoGSO {
		args = append(args, "-nogso")
	}
	if o.Datagram != 0 {
		args = append(args, "-datagram", strconv.Itoa(o.Datagram))
	}
	if o.SharedDial {
		args = append(args, "-shared")
	}
	if o.LoMTU != 0 {
		args = append(args, "-mtu", strconv.Itoa(o.LoMTU))
	}
	if o.Repeat > 1 {
		args = append(args, "-repeat", strconv.Itoa(o.Repeat))
	}
	if o.traceDir != "" {
		args = append(args, "-trace", filepath.Join(o.traceDir, strings.Fields(env)[1]))
	}
	if o.cpuProfile != "" {
		args = append(args, "-cpuprofile", o.cpuProfile+"."+strings.ReplaceAll(strings.Fields(env)[1], ",", ""))
	}
	return append(args, o.Scenarios...)
}

func aptInstall(ctx context.Context, stderr io.Writer, pkg string) error {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return errors.New("apt-get not found (not Debian/Ubuntu)")
	}
	for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", pkg}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Dir = "/"
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w", strings.Join(args, " "), err)
		}
	}
	return nil
}

func tcTime(d time.Duration) string {
	return strconv.FormatInt(d.Microseconds(), 10) + "us"
}

func tcPercent(p float64) string {
	return strconv.FormatFloat(100*p, 'f', -1, 64) + "%"
}
