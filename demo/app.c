/* A tiny static TCP server: the sample "app" of the demo and of the node tests, a target with
 * no shell at all.
 *
 * app PORT: for each connection, read until "\r\n\r\n" (an HTTP request head) or EOF; answer an
 * HTTP request with "HTTP/1.1 200 OK" and body "app", anything else with "app:" + the bytes read,
 * then close. One forked child per connection. */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void serve(int c) {
    static char buf[1 << 20];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(c, buf + n, sizeof buf - n - 1);
        if (r <= 0) break;
        n += (size_t)r;
        buf[n] = 0;
        if (strstr(buf, "\r\n\r\n") || n >= sizeof buf - 1) break;
    }
    if (n >= 4 && (!memcmp(buf, "GET ", 4) || !memcmp(buf, "POST", 4))) {
        const char *r = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                        "Connection: close\r\n\r\napp";
        if (write(c, r, strlen(r)) < 0) return;
    } else {
        if (write(c, "app:", 4) < 0 || write(c, buf, n) < 0) return;
    }
    shutdown(c, SHUT_WR);
    while (read(c, buf, sizeof buf) > 0) {}
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    signal(SIGCHLD, SIG_IGN);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 512)) { perror("app"); return 1; }
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        if (fork() == 0) { close(s); serve(c); _exit(0); }
        close(c);
    }
}
