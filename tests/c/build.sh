#!/bin/sh
# Build the pure-C reactor tests: tests/c/build.sh [extra CFLAGS...]
# Output: tests/c/bin/test_reactor (conformance, both backends) and
#         tests/c/bin/test_uring_extra (io_uring-specific).
set -e
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
mkdir -p "$here/bin"
uring=$(${CC:-cc} -print-file-name=liburing.a)
flags="-std=c11 -O1 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes"
${CC:-cc} $flags "$@" -I"$top/src" -I"$top/src/reactor" \
    "$here/test_reactor.c" "$top/src/reactor/common.c" \
    "$top/src/reactor/epoll.c" "$top/src/reactor/uring.c" \
    "$uring" -lpthread -o "$here/bin/test_reactor"
${CC:-cc} $flags "$@" -I"$top/src" -I"$top/src/reactor" \
    "$here/test_uring_extra.c" "$top/src/reactor/common.c" \
    "$top/src/reactor/epoll.c" "$top/src/reactor/uring.c" \
    "$uring" -lpthread -o "$here/bin/test_uring_extra"
