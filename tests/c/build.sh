#!/bin/sh
# Build the pure-C reactor conformance test: tests/c/build.sh [extra CFLAGS...]
# Output: tests/c/bin/test_reactor
set -e
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
mkdir -p "$here/bin"
uring=$(${CC:-cc} -print-file-name=liburing.a)
${CC:-cc} -std=c11 -O1 -g -Wall -Wextra -Werror -Wshadow \
    -Wstrict-prototypes -Wmissing-prototypes "$@" -I"$top/src" \
    "$here/test_reactor.c" "$top/src/reactor_common.c" \
    "$top/src/reactor_epoll.c" "$top/src/reactor_uring.c" \
    "$uring" -lpthread -o "$here/bin/test_reactor"
