// Command testapp is the HTTP application kdiag's cluster tests debug. Its image holds
// nothing but this static binary ("distroless"): no shell, no ps, no libc.
//
// App mode (default) serves HTTP and logs every request to stdout:
//
//	GET /          "hello from <name>\n"
//	GET /healthz   "ok\n"
//	GET /echo      the request line, headers and body back
//	GET /call      (sidecar mode) make one outgoing call now and return its result
//
// Run with -version it prints "testapp 1.0" and exits (something to exec in a container that
// has nothing else). Sidecar mode (-call-url) also calls a URL every -call-interval and logs the result,
// so tests can watch (and redirect) a pod's outgoing traffic.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", envOr("LISTEN", ":8080"), "address to serve HTTP on")
	name := flag.String("name", envOr("NAME", hostname()), "name used in responses and logs")
	callURL := flag.String("call-url", os.Getenv("CALL_URL"), "sidecar mode: URL to call")
	interval := flag.Duration("call-interval", durationEnv("CALL_INTERVAL", 0),
		"sidecar mode: call -call-url this often (0: only on GET /call)")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println("testapp 1.0")
		return
	}

	logger := log.New(os.Stdout, "", log.LstdFlags|log.Lmicroseconds)
	client := &http.Client{Timeout: 5 * time.Second}
	call := func(ctx context.Context, url string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			logger.Printf("call %s: error: %v", url, err)
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		logger.Printf("call %s: %d %q", url, resp.StatusCode, strings.TrimSpace(string(body)))
		return fmt.Sprintf("%d %s", resp.StatusCode, body), nil
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", *name)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s\n", r.Method, r.URL, r.Proto)
		for k, v := range r.Header {
			fmt.Fprintf(w, "%s: %s\n", k, strings.Join(v, ", "))
		}
		fmt.Fprintln(w)
		io.Copy(w, io.LimitReader(r.Body, 1<<20))
	})
	mux.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		url := r.URL.Query().Get("url")
		if url == "" {
			url = *callURL
		}
		if url == "" {
			http.Error(w, "no URL: pass ?url= or start with -call-url", http.StatusBadRequest)
			return
		}
		out, err := call(r.Context(), url)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, out)
	})

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger.Printf("%s %s %s from %s", *name, r.Method, r.URL.RequestURI(), r.RemoteAddr)
		mux.ServeHTTP(w, r)
	})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *callURL != "" && *interval > 0 {
		go func() {
			t := time.NewTicker(*interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					call(ctx, *callURL)
				}
			}
		}()
	}

	srv := &http.Server{Addr: *listen, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	logger.Printf("%s listening on %s (call-url=%q interval=%s)", *name, *listen, *callURL, *interval)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		logger.Fatalf("serve: %v", err)
	}
	logger.Printf("%s stopped", *name)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func durationEnv(key string, def time.Duration) time.Duration {
	if v := os.Getenv(key); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "testapp"
	}
	return h
}
