"""Build ringloop._core: the C sources in src/, liburing linked statically.

Environment switches:
  RINGLOOP_DEBUG=1     asserts on, -O0 -g, RL_DEBUG counters
  RINGLOOP_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer
  RINGLOOP_WERROR=0    do not turn warnings into errors (default: on)
"""
import glob
import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup

if not sys.platform.startswith("linux"):
    sys.exit("ringloop needs Linux (io_uring / epoll)")


def env_flag(name, default="0"):
    return os.environ.get(name, default).strip().lower() in ("1", "yes", "true", "on")


def liburing_static():
    cc = shlex.split(os.environ.get("CC", "cc"))
    try:
        out = subprocess.check_output(cc + ["-print-file-name=liburing.a"], text=True).strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"cannot run the C compiler to find liburing.a: {exc}")
    if not os.path.isabs(out) or not os.path.exists(out):
        sys.exit("liburing.a not found: install liburing (Debian: apt-get install liburing-dev)")
    return os.path.realpath(out)


cflags = [
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Wshadow",
    "-Wstrict-prototypes",
    "-Wmissing-prototypes",
    "-fvisibility=hidden",
]
ldflags = []
macros = []
if env_flag("RINGLOOP_WERROR", "1"):
    cflags.append("-Werror")
if env_flag("RINGLOOP_DEBUG"):
    cflags += ["-O0", "-g3", "-UNDEBUG"]
    macros.append(("RL_DEBUG", "1"))
else:
    cflags += ["-O2"]
if env_flag("RINGLOOP_SANITIZE"):
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    cflags += san + ["-g"]
    ldflags += san

# src/ is split by layer (ARCHITECTURE.md): each folder is on the include path
# so a file names a header by its base name wherever the two live.
SRC_DIRS = sorted(d for d in glob.glob("src/*") if os.path.isdir(d))

ext = Extension(
    "ringloop._core",
    sources=sorted(glob.glob("src/*.c") + glob.glob("src/*/*.c")),
    depends=sorted(glob.glob("src/*.h") + glob.glob("src/*/*.h")),
    include_dirs=["src"] + SRC_DIRS,
    define_macros=macros,
    extra_compile_args=cflags,
    extra_link_args=ldflags,
    extra_objects=[liburing_static()],
)

setup(
    ext_modules=[ext],
    package_dir={"": "python"},
    packages=["ringloop"],
    package_data={"ringloop": ["py.typed", "*.pyi"]},
)
