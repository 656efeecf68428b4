// The sandbox ("pause") process of the smimesh test node's Pods: holds the Pod's namespaces,
// reaps the zombies of processes that share its PID namespace, and exits on SIGINT/SIGTERM.
// Built static by smimesh/testing/images.py and packed into registry.k8s.io/pause:<version>.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	children := make(chan os.Signal, 16)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-children:
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
