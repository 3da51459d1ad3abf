"""The arguments of the traffic commands: ``redirect``, ``mirror``, ``capture``, ``forward``
(each function adds one command's arguments to its parser; :mod:`kdiag.cli.main` lists them)."""

from __future__ import annotations

import argparse


def redirect_arguments(redirect: argparse.ArgumentParser) -> None:
    from kdiag.cli.adhoc.targeting import add_target_flags

    redirect.description = ("Redirect the target's incoming connections on PORT (or, with "
                            "--outgoing, its connections to PORT) to LOCALPORT on this machine "
                            "until Ctrl-C. Without ports: every port the target listens on.")
    redirect.epilog = ("examples:\n  kdiag redirect -n shop api-0 8080:9000\n"
                       "  kdiag redirect -n shop deploy/api --all 8080:9000   # every replica, "
                       "and those that come later\n"
                       "  kdiag redirect -n shop svc/api --all http:9000      # the Service's "
                       "port: its targetPort\n"
                       "  kdiag redirect -l app=api            # every listening port, same "
                       "numbers\n  kdiag redirect --outgoing --pod web-0 5432")
    add_target_flags(redirect)
    redirect.add_argument("ports", nargs="*", metavar="[TARGET] PORT[:LOCALPORT]",
                          help="the target first (unless --pod/-l name it), then the ports "
                               "(a number, or a Service's or container's port name)")
    redirect.add_argument("--probes", choices=["app", "redirect"], default="app",
                          help="incoming: the node's connections (the kubelet's probes) reach "
                               "the app (default: the pod stays Ready) or are redirected too")
    redirect.add_argument("--outgoing", action="store_true",
                          help="the target's outgoing connections to PORT")
    redirect.add_argument("--to", default="127.0.0.1", metavar="HOST",
                          help="the local host to send them to (default 127.0.0.1)")
    redirect.add_argument("--no-fail-open", action="store_true",
                          help="refuse connections this machine cannot take (default: they "
                               "reach their original destination)")
    redirect.set_defaults(handler="kdiag.cli.adhoc.redirect")


def mirror_arguments(mirror: argparse.ArgumentParser) -> None:
    from kdiag.cli.adhoc.targeting import add_target_flags

    mirror.description = ("Copy what clients send to the target's PORT to LOCALPORT on this "
                          "machine until Ctrl-C; the app still serves every connection, and the "
                          "local server's replies are discarded. A copy this machine cannot "
                          "take in time is dropped (and counted), never the app's traffic. "
                          "Without ports: every port the target listens on.")
    mirror.epilog = ("examples:\n  kdiag mirror -n shop deploy/api 8080:9000\n"
                     "  kdiag mirror -n shop deploy/api --all 8080:9000   # every replica\n"
                     "  kdiag mirror -n shop api-0 8080:9000 --header X-Debug=1   # only "
                     "matching HTTP requests")
    add_target_flags(mirror)
    mirror.add_argument("ports", nargs="*", metavar="[TARGET] PORT[:LOCALPORT]",
                        help="the target first (unless --pod/-l name it), then the ports")
    mirror.add_argument("--header", metavar="NAME=VALUE",
                        help="copy only HTTP/1.1 requests with this header")
    mirror.add_argument("--probes", choices=["app", "mirror"], default="app",
                        help="the node's connections (the kubelet's probes) are not copied "
                             "(app, default) or copied too")
    mirror.add_argument("--to", default="127.0.0.1", metavar="HOST",
                        help="the local host the copies go to (default 127.0.0.1)")
    mirror.set_defaults(handler="kdiag.cli.adhoc.mirror")


def capture_arguments(capture: argparse.ArgumentParser) -> None:
    from kdiag.cli.adhoc.targeting import TARGET_HELP, add_target_flags

    capture.description = ("Capture the target's packets (tcpdump in the manager's container, "
                           "nothing uploaded into the app's) as a pcap stream written as they "
                           "arrive, to FILE or to stdout (-w -), until Ctrl-C (exit 130; the "
                           "pcap ends on a packet boundary) or a limit (exit 0). A reader that "
                           "goes away ends it quietly (exit 0).")
    capture.epilog = ("examples:\n  kdiag capture -n shop deploy/api -f 'port 8080' -w - | "
                      "tcpdump -r -\n  kdiag capture -n shop api-0 -w - | wireshark -k -i -\n"
                      "  kdiag capture --pid 1234 -i eth0 --count 100 -w out.pcap")
    add_target_flags(capture, all_pods=False)
    capture.add_argument("words", nargs="*", metavar="TARGET", help=TARGET_HELP)
    capture.add_argument("-w", "--write", required=True, metavar="FILE|-",
                         help="the pcap file, or - for stdout")
    capture.add_argument("-f", "--filter", metavar="FILTER", help="a tcpdump filter expression")
    capture.add_argument("-i", "--interface", metavar="IFACE", help="default: any")
    capture.add_argument("--count", type=int, default=0, metavar="N",
                         help="stop after N packets")
    capture.add_argument("--duration", type=float, default=0, metavar="SECONDS",
                         help="stop after this long")
    capture.add_argument("--max-bytes", metavar="SIZE", help="stop before the pcap passes "
                         "SIZE (e.g. 100MiB; default: no limit)")
    capture.add_argument("--snaplen", type=int, default=0, metavar="BYTES",
                         help="bytes kept of each packet (default: tcpdump's)")
    capture.set_defaults(handler="kdiag.cli.adhoc.capture")


def forward_arguments(forward: argparse.ArgumentParser) -> None:
    from kdiag.cli.adhoc.targeting import add_target_flags

    forward.description = ("Forward local ports to a pod's ports through the API server until "
                           "Ctrl-C.")
    forward.epilog = ("examples:\n  kdiag forward -n shop api-0 8080 9090:9000\n"
                      "  kdiag forward -n shop svc/api 80     # a pod behind the Service, on "
                      "its targetPort")
    add_target_flags(forward, all_pods=False)
    forward.add_argument("ports", nargs="*", metavar="[TARGET] PORT[:LOCALPORT]",
                         help="the target first (unless --pod/-l name it), then the ports")
    forward.add_argument("--address", default="127.0.0.1", help="local address (default "
                         "127.0.0.1)")
    forward.set_defaults(handler="kdiag.cli.adhoc.forward")
