package main

// Two small CRI clients used by the cluster scripts (no crictl needed):
//
//	kube cri-ps      --endpoint unix:///.../containerd.sock   list pod sandboxes and containers
//	kube cri-cleanup --endpoint unix:///.../containerd.sock   stop and remove every pod sandbox
//
// cri-cleanup goes through StopPodSandbox, so the runtime tears pod networking down with
// CNI DEL (veth, IP allocation, portmap rules) before the sandbox is removed.

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	criapi "k8s.io/cri-api/pkg/apis"
	remote "k8s.io/cri-client/pkg"
	"k8s.io/klog/v2"
)

func criCommand(use string, run func(ctx context.Context, rs criapi.RuntimeService) error) func() *cobra.Command {
	return func() *cobra.Command {
		var endpoint string
		cmd := &cobra.Command{
			Use:          use,
			SilenceUsage: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				logger := klog.Background()
				rs, err := remote.NewRemoteRuntimeService(endpoint, 30*time.Second, nil, &logger)
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				return run(ctx, rs)
			},
		}
		cmd.Flags().StringVar(&endpoint, "endpoint", "", "CRI endpoint, e.g. unix:///path/containerd.sock")
		cmd.MarkFlagRequired("endpoint")
		return cmd
	}
}

func criPs(ctx context.Context, rs criapi.RuntimeService) error {
	pods, err := rs.ListPodSandbox(ctx, nil)
	if err != nil {
		return err
	}
	for _, p := range pods {
		fmt.Printf("pod %.13s %-8s %s/%s\n", p.Id, p.State, p.Metadata.Namespace, p.Metadata.Name)
	}
	ctrs, err := rs.ListContainers(ctx, nil)
	if err != nil {
		return err
	}
	for _, c := range ctrs {
		fmt.Printf("container %.13s %-18s pod %.13s %s\n", c.Id, c.State, c.PodSandboxId, c.Metadata.Name)
	}
	return nil
}

func criCleanup(ctx context.Context, rs criapi.RuntimeService) error {
	pods, err := rs.ListPodSandbox(ctx, nil)
	if err != nil {
		return err
	}
	failed := 0
	for _, p := range pods {
		name := p.Metadata.Namespace + "/" + p.Metadata.Name
		if err := rs.StopPodSandbox(ctx, p.Id); err != nil {
			fmt.Fprintf(os.Stderr, "stop pod %s: %v\n", name, err)
			failed++
			continue
		}
		if err := rs.RemovePodSandbox(ctx, p.Id); err != nil {
			fmt.Fprintf(os.Stderr, "remove pod %s: %v\n", name, err)
			failed++
			continue
		}
		fmt.Fprintf(os.Stderr, "removed pod %s\n", name)
	}
	if failed > 0 {
		return fmt.Errorf("%d pod sandboxes could not be removed", failed)
	}
	return nil
}
