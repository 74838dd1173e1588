// Command cluster runs a demonstration sshchat cluster on one machine: an
// embedded NATS server with JetStream (built from this module, nothing to
// download) and three sshchat nodes on ports 2222, 2223 and 2224 sharing one
// room, one host key and the allowed keys file. Ctrl-C stops it all.
//
//	go run ./scripts/cluster                   # from the repository root
//	go run ./scripts/cluster -keys keys/allowed_keys -dir data/cluster
//	go run ./scripts/cluster -- -rate 0        # flags after -- go to every node
//
// Each node logs to DIR/nodeN.log and keeps its data in DIR/nodeN.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/sshchat-dev/sshchat/sshchat"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "data/cluster", "`directory` for the NATS store, the nodes' data, logs and the binary")
	allowed := flag.String("keys", "keys/allowed_keys", "allowed keys `file` every node uses")
	basePort := flag.Int("port", 2222, "SSH `port` of the first node; the others follow")
	nodes := flag.Int("nodes", 3, "how many nodes")
	natsPort := flag.Int("nats-port", 4222, "NATS client `port`")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./scripts/cluster [flags] [-- sshchat serve flags for every node]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	nodeFlags := flag.Args()

	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: *natsPort, JetStream: true, StoreDir: filepath.Join(*dir, "nats"), NoSigs: true,
	})
	if err != nil {
		return fmt.Errorf("NATS server: %w", err)
	}
	ns.ConfigureLogger()
	ns.Start()
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	if !ns.ReadyForConnections(10 * time.Second) {
		return errors.New("the NATS server did not start")
	}
	natsURL := ns.ClientURL()

	bin := filepath.Join(*dir, "sshchat")
	fmt.Println("building sshchat ...")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build (run this from the repository root): %w", err)
	}
	// One host key for every node: they are one server behind one name.
	hostKey := filepath.Join(*dir, "host_ed25519")
	if _, _, err := sshchat.LoadOrCreateHostKey(hostKey); err != nil {
		return err
	}

	// SIGHUP too: closing the terminal must not leave the nodes running,
	// which are in their own process group. And a closed pipe on stdout
	// (go run ./scripts/cluster | tee log) must not kill this program
	// before it has stopped them.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	var procs []*exec.Cmd
	exited := make(chan int, *nodes) // which node's process ended
	running := 0
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
		}
		for ; running > 0; running-- {
			<-exited
		}
	}()
	for i := range *nodes {
		name := "node" + strconv.Itoa(i+1)
		data := filepath.Join(*dir, name)
		logFile, err := os.Create(filepath.Join(*dir, name+".log"))
		if err != nil {
			return err
		}
		defer logFile.Close()
		cmd := exec.Command(bin, "serve",
			"-addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(*basePort+i)),
			"-nats", natsURL, "-node", name, "-data", data,
			"-host-key", hostKey, "-keys", *allowed, "-ops", filepath.Join(filepath.Dir(*allowed), "ops"))
		cmd.Args = append(cmd.Args, nodeFlags...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C reaches this program, which stops them
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		procs = append(procs, cmd)
		running++
		go func() {
			cmd.Wait()
			exited <- i
		}()
	}

	fmt.Printf("\nNATS: %s (follow the traffic with: nats sub -s %s 'sshchat.>')\n", natsURL, natsURL)
	for i := range *nodes {
		fmt.Printf("node%d: ssh -p %d localhost     (pid %d, log %s)\n", i+1, *basePort+i, procs[i].Process.Pid, filepath.Join(*dir, fmt.Sprintf("node%d.log", i+1)))
	}
	fmt.Printf("\nUsers come from %s (a missing file is seeded from your ~/.ssh/*.pub).\n", *allowed)
	fmt.Println("Kill a node (kill -9 PID) to see its users leave the others within 10 s. Ctrl-C stops everything.")

	for running > 0 {
		select {
		case <-ctx.Done():
			fmt.Println("\nstopping ...")
			return nil
		case i := <-exited:
			running--
			p := procs[i]
			fmt.Printf("\nnode%d stopped (%v); see %s. The others go on. To start it again (then it is yours to stop):\n  %s >>%s 2>&1 &\n",
				i+1, p.ProcessState, filepath.Join(*dir, fmt.Sprintf("node%d.log", i+1)), shellJoin(p.Args), filepath.Join(*dir, fmt.Sprintf("node%d.log", i+1)))
		}
	}
	return errors.New("every node has stopped; see their logs")
}

// shellJoin quotes args for a POSIX shell, so that a printed command can be
// pasted.
func shellJoin(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:,=@") == "" {
			quoted[i] = a
		} else {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(quoted, " ")
}
