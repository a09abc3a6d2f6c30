"""Build ringloop._core: the C sources in src/, liburing linked statically.

Environment switches:
  RINGLOOP_DEBUG=1     asserts on, -O0 -g, RL_DEBUG counters
  RINGLOOP_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer
  RINGLOOP_WERROR=1    turn warnings into errors (default: off, so that a
                       newer compiler's new warning never breaks a user's
                       `pip install`; CI and scripts/build-inplace.sh set it)

Objects are built in a directory named after the switches (build_temp/
<tag>), so a build with other switches never links objects compiled with
different ones (e.g. a RINGLOOP_SANITIZE build reusing normal objects).

The module exports one symbol, PyInit__core: a linker version script hides
everything else, liburing's io_uring_* functions included (they are linked in
statically and must not clash with another copy in the same process).  The
version comes from ringloop.__version__ (pyproject.toml reads it); the
license is set here because its metadata field changed in setuptools 77.
"""
import glob
import hashlib
import os
import re
import shlex
import subprocess
import sys


LINK_RECIPE = "exports=PyInit__core only; no rpath"


def env_flag(environ, name, default="0"):
    return environ.get(name, default).strip().lower() in ("1", "yes", "true", "on")


def build_config(environ):
    """(cflags, ldflags, macros, tag) for these environment switches; tag
    names the object directory and changes with every flag."""
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
    words = []
    if env_flag(environ, "RINGLOOP_WERROR"):
        cflags.append("-Werror")
        words.append("werror")
    if env_flag(environ, "RINGLOOP_DEBUG"):
        cflags += ["-O0", "-g3", "-UNDEBUG"]
        macros.append(("RL_DEBUG", "1"))
        words.append("dbg")
    else:
        cflags += ["-O2"]
    if env_flag(environ, "RINGLOOP_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
        cflags += san + ["-g"]
        ldflags += san
        words.append("asan")
    # CC/CFLAGS from the environment change the objects as well
    extra = (environ.get("CC", ""), environ.get("CFLAGS", ""), environ.get("CPPFLAGS", ""))
    # LINK_RECIPE: how the module is linked (exports, rpath); a change of it
    # must relink modules built before it
    digest = hashlib.sha256(repr((cflags, ldflags, macros, extra, LINK_RECIPE)).encode()).hexdigest()[:10]
    tag = "-".join(words + [digest]) if words else "plain-" + digest
    return cflags, ldflags, macros, tag


def liburing_static():
    cc = shlex.split(os.environ.get("CC", "cc"))
    try:
        out = subprocess.check_output(cc + ["-print-file-name=liburing.a"], text=True).strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"cannot run the C compiler to find liburing.a: {exc}")
    if not os.path.isabs(out) or not os.path.exists(out):
        sys.exit("liburing.a not found: install liburing (Debian: apt-get install liburing-dev)")
    return os.path.realpath(out)


# -- ringloop.info()'s "liburing" (helper cli; one macro, nothing else) --
def liburing_version_macros():
    """[("RL_LIBURING_VERSION", '"X.Y"')] from pkg-config, [] if unknown."""
    try:
        out = subprocess.run(
            ["pkg-config", "--modversion", "liburing"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return []
    return [("RL_LIBURING_VERSION", f'"{out}"')] if re.fullmatch(r"[0-9][0-9.]*", out) else []
# -- end --


# The only symbol the module exports; the rest is local (setup.py writes this
# as a linker version script into the build directory).
EXPORTS_SCRIPT = "{\n  global: PyInit__core;\n  local: *;\n};\n"


def license_metadata(setuptools_version):
    """setup() keywords for the license: an SPDX expression for setuptools
    >= 77 (core metadata 2.4, License-Expression), the old free-text field
    before."""
    try:
        major = int(setuptools_version.split(".")[0])
    except ValueError:
        major = 0
    if major >= 77:
        return {"license_expression": "MIT", "license_files": ["LICENSE"]}
    return {"license": "MIT", "license_files": ["LICENSE"]}


def main():
    import setuptools
    from setuptools import Extension, setup
    from setuptools.command.build_ext import build_ext

    if not sys.platform.startswith("linux"):
        sys.exit("ringloop needs Linux (io_uring / epoll)")

    cflags, ldflags, macros, tag = build_config(os.environ)

    class BuildExt(build_ext):
        """build_ext whose objects live in a directory per flag set."""

        def finalize_options(self):
            super().finalize_options()
            self.build_temp = os.path.join(self.build_temp, tag)

        def build_extensions(self):
            # A Python built with an rpath (pyenv's shared builds) hands it to
            # every extension through LDSHARED: the module links no libpython
            # and must not carry this machine's paths.
            self.compiler.linker_so = [a for a in self.compiler.linker_so
                                       if not a.startswith(("-Wl,-rpath", "-Wl,-R"))]
            os.makedirs(self.build_temp, exist_ok=True)
            script = os.path.join(self.build_temp, "exports.map")
            with open(script, "w") as f:
                f.write(EXPORTS_SCRIPT)
            for e in self.extensions:
                e.extra_link_args = [a for a in e.extra_link_args
                                     if not a.startswith("-Wl,--version-script=")]
                e.extra_link_args.append(f"-Wl,--version-script={os.path.abspath(script)}")
            super().build_extensions()

        def build_extension(self, ext):
            # setuptools skips an extension whose file is newer than its
            # sources, whatever switches built it: remember the tag each
            # output file was built with, and rebuild when it differs.
            out = os.path.abspath(self.get_ext_fullpath(ext.name))
            stamp = os.path.join(
                os.path.dirname(os.path.abspath(__file__)), "build", "flag-stamps",
                hashlib.sha256(out.encode()).hexdigest()[:16],
            )
            try:
                with open(stamp) as f:
                    built_with = f.read()
            except OSError:
                built_with = None
            if built_with != f"{tag} {out}" or not os.path.exists(out):
                self.force = True
            super().build_extension(ext)
            os.makedirs(os.path.dirname(stamp), exist_ok=True)
            with open(stamp, "w") as f:
                f.write(f"{tag} {out}")

    # src/ is split by layer (ARCHITECTURE.md): each folder is on the include
    # path so a file names a header by its base name wherever the two live.
    src_dirs = sorted(d for d in glob.glob("src/*") if os.path.isdir(d))

    ext = Extension(
        "ringloop._core",
        sources=sorted(glob.glob("src/*.c") + glob.glob("src/*/*.c")),
        depends=sorted(glob.glob("src/*.h") + glob.glob("src/*/*.h")),
        include_dirs=["src"] + src_dirs,
        define_macros=macros + liburing_version_macros(),
        extra_compile_args=cflags,
        extra_link_args=ldflags,
        extra_objects=[liburing_static()],
    )

    setup(
        ext_modules=[ext],
        cmdclass={"build_ext": BuildExt},
        package_dir={"": "python"},
        packages=["ringloop"],
        package_data={"ringloop": ["py.typed", "*.pyi"]},
        **license_metadata(setuptools.__version__),
    )


if __name__ == "__main__":
    main()
