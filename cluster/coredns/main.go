// Command coredns is CoreDNS with only the plugins kdiag's test cluster uses: the cluster's
// DNS server (cluster.local from the API server, other names forwarded to the host's
// resolver). Importing a plugin package registers it; the Corefile written by cluster/up.sh
// may use no other directive.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
